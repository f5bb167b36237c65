"""Capacity: instances under target-tracking autoscaling, or serverless inference (settings ``serving``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mlcycle import deployment
from mlcycle.config import ServerlessCapacity, Settings


def _serving(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(update={"serving": settings.serving.model_copy(update=update)})


@pytest.fixture
def autoscaling() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("application-autoscaling", region_name="us-east-1")


def test_instances_start_within_the_autoscaling_bounds(settings: Settings) -> None:
    variant = deployment.variant_of(_serving(settings, min_instances=2, max_instances=4), "model")
    assert variant["InstanceType"] == settings.instances.endpoint
    assert variant["InitialInstanceCount"] == 2  # the configured 1 is below the minimum
    assert "ServerlessConfig" not in variant


def test_serverless_capacity_replaces_instances(settings: Settings) -> None:
    serverless = _serving(settings, serverless=ServerlessCapacity(memory_mb=3072, max_concurrency=20))
    variant = deployment.variant_of(serverless, "model")
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 20}
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    with pytest.raises(ValueError, match="max_concurrency"):
        ServerlessCapacity(max_concurrency=500)


def test_autoscaling_tracks_invocations_per_instance_between_the_bounds(
    settings: Settings, autoscaling: Any
) -> None:
    chosen = _serving(settings, min_instances=1, max_instances=3, target_invocations_per_instance=250)
    # WHEN a deployment concluded, twice (a redelivered event)
    assert deployment.ensure_autoscaling(chosen, autoscaling=autoscaling)
    assert deployment.ensure_autoscaling(chosen, autoscaling=autoscaling)
    # THEN the variant is one scalable target with one target-tracking policy
    resource = f"endpoint/{settings.endpoint_name}/variant/AllTraffic"
    [target] = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (resource, 1, 3)
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    [policy] = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 250.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )


def test_serverless_endpoints_are_left_to_sagemaker(settings: Settings, autoscaling: Any) -> None:
    serverless = _serving(settings, serverless=ServerlessCapacity())
    assert not deployment.ensure_autoscaling(serverless, autoscaling=autoscaling)
    assert autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
