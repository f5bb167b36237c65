"""Deploy an approved model package to the project's SageMaker endpoint (create or update).

The model and endpoint config take names derived from the package version, so a redelivered approval
event finds them already there and only re-points the endpoint. Data capture is always configured: the
monitors read it. The first model creates the endpoint; a later one updates it under the settings'
deployment policy (SageMaker's deployment guardrails: a blue/green update shifting traffic all at once,
as a canary or linearly, rolled back by SageMaker when one of the rollback alarms fires). Each endpoint
config records the one it replaced (tag ``mlcycle:previous-config``), so :func:`rollback` can return to
the previous model by hand.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import ClientError

from mlcycle.config import DeploymentPolicy, Settings

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker.literals import ProductionVariantInstanceTypeType
    from mypy_boto3_sagemaker.type_defs import (
        DeploymentConfigTypeDef,
        DescribeEndpointOutputTypeDef,
        ProductionVariantTypeDef,
        TagTypeDef,
    )

VARIANT = "AllTraffic"
PREVIOUS_CONFIG_TAG = "mlcycle:previous-config"
PACKAGE_TAG = "mlcycle:model-package"
#: On the endpoint: the config a deployment asked for, until its outcome is known (see :func:`outcome`).
REQUESTED_TAG = "mlcycle:requested-config"
#: On an endpoint config that adds a shadow variant to the champion's: the challenger's model package.
SHADOW_TAG = "mlcycle:shadow-package"
_ALARM_IN_REASON = re.compile(r"alarm (\S+) went into ALARM", re.IGNORECASE)
_ROUTING = {"all_at_once": "ALL_AT_ONCE", "canary": "CANARY", "linear": "LINEAR"}


def deployment_config(policy: DeploymentPolicy, rollback_alarms: Sequence[str]) -> dict[str, Any]:
    """SageMaker's ``DeploymentConfig`` for ``policy``, rolled back by any of ``rollback_alarms``."""
    routing: dict[str, Any] = {
        "Type": _ROUTING[policy.strategy],
        "WaitIntervalInSeconds": policy.wait_seconds,
    }
    if policy.strategy == "canary":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": policy.canary_percent}
    elif policy.strategy == "linear":
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": policy.linear_step_percent}
    else:
        routing["WaitIntervalInSeconds"] = 0
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": policy.termination_wait_seconds,
            "MaximumExecutionTimeoutInSeconds": policy.max_execution_seconds,
        }
    }
    if rollback_alarms:
        config["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": name} for name in rollback_alarms[:10]]
        }
    return config


@dataclass
class Deployment:
    endpoint_name: str
    endpoint_config_name: str
    model_name: str
    model_package_arn: str
    action: str  # "created" | "updated" | "unchanged"


def names(settings: Settings, package_arn: str) -> tuple[str, str]:
    version = package_arn.rsplit("/", 1)[1]
    digest = hashlib.sha256(package_arn.encode()).hexdigest()[:8]
    base = f"{settings.prefix}-v{version}-{digest}"
    return base, f"{base}-config"


def exists(call: Callable[..., object], **kwargs: Any) -> bool:
    try:
        call(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return False
        raise
    return True


def ensure_model(
    sagemaker: SageMakerClient, name: str, package: Mapping[str, Any], role_arn: str, settings: Settings
) -> None:
    """The version's model, in the settings' VPC if any (not for serverless endpoints: SageMaker runs
    those in no VPC of ours). No network isolation: the serving container fetches its code from S3."""
    if exists(sagemaker.describe_model, ModelName=name):
        return
    container = package["InferenceSpecification"]["Containers"][0]
    vpc = settings.security.vpc
    placement = {"VpcConfig": vpc.sagemaker()} if vpc and settings.serving.serverless is None else {}
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=role_arn,
        PrimaryContainer={
            "Image": container["Image"],
            "ModelDataUrl": container["ModelDataUrl"],
            "Environment": container.get("Environment", {}),
        },
        Tags=[{"Key": PACKAGE_TAG, "Value": package["ModelPackageArn"]}],
        **cast("dict[str, Any]", placement),
    )


def variant_of(settings: Settings, model: str) -> ProductionVariantTypeDef:
    """The one production variant: serverless capacity, or instances (which autoscaling then manages)."""
    variant: ProductionVariantTypeDef = {
        "VariantName": VARIANT,
        "ModelName": model,
        "InitialVariantWeight": 1.0,
    }
    serverless = settings.serving.serverless
    if serverless is not None:
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": serverless.memory_mb,
            "MaxConcurrency": serverless.max_concurrency,
        }
        return variant
    # The settings take any instance type name; SageMaker validates it.
    variant["InstanceType"] = cast("ProductionVariantInstanceTypeType", settings.instances.endpoint)
    variant["InitialInstanceCount"] = min(
        max(settings.instances.endpoint_initial_count, settings.serving.min_instances),
        settings.serving.max_instances,
    )
    return variant


def capture_config(settings: Settings, capture_uri: str) -> dict[str, Any]:
    return {
        "EnableCapture": settings.capture_percentage > 0,
        "KmsKeyId": settings.security.endpoint_key(settings.prefix),
        "InitialSamplingPercentage": max(settings.capture_percentage, 1),
        "DestinationS3Uri": capture_uri,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
    }


def _ensure_endpoint_config(
    sagemaker: SageMakerClient,
    name: str,
    model: str,
    settings: Settings,
    *,
    capture_uri: str,
    previous: str | None,
) -> None:
    if exists(sagemaker.describe_endpoint_config, EndpointConfigName=name):
        return
    tags: list[TagTypeDef] = [{"Key": PREVIOUS_CONFIG_TAG, "Value": previous}] if previous else []
    # SageMaker does not capture serverless endpoints (it refuses a DataCaptureConfig for them).
    capture = (
        {} if settings.serving.serverless else {"DataCaptureConfig": capture_config(settings, capture_uri)}
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        Tags=tags,
        ProductionVariants=[variant_of(settings, model)],
        **cast("dict[str, Any]", capture | volume_key(settings)),
    )


#: Instance families whose storage is local NVMe (encrypted by the hardware): SageMaker refuses a
#: ``KmsKeyId`` for their endpoint configs.
_LOCAL_STORAGE = re.compile(r"^ml\.([a-z]+\d+[a-z]*d[a-z]*|g5|g6e?|p5e?)\.")


def volume_key(settings: Settings) -> dict[str, str]:
    """``KmsKeyId`` of an endpoint config: the key of its instances' ML storage volumes. None for
    serverless endpoints (no volume of ours) and instance types with only local NVMe storage."""
    if settings.serving.serverless is not None or _LOCAL_STORAGE.match(settings.instances.endpoint):
        return {}
    return {"KmsKeyId": settings.security.endpoint_key(settings.prefix)}


def current_endpoint(sagemaker: SageMakerClient, endpoint: str) -> DescribeEndpointOutputTypeDef | None:
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
            raise
        return None
    return described


def deploy(
    settings: Settings,
    package_arn: str,
    *,
    sagemaker: SageMakerClient,
    role_arn: str,
    capture_uri: str,
    rollback_alarms: Sequence[str] = (),
) -> Deployment:
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    if package["ModelApprovalStatus"] != "Approved":
        raise ValueError(
            f"{package_arn} is {package['ModelApprovalStatus']}, not Approved: refusing to deploy"
        )
    model, config = names(settings, package_arn)
    endpoint = settings.endpoint_name
    current = current_endpoint(sagemaker, endpoint)
    previous = current["EndpointConfigName"] if current else None
    ensure_model(sagemaker, model, package, role_arn, settings)
    # A shadow config is never returned to: the config before it served the same champion without it.
    replaced = None if previous in (None, config) else production_config(sagemaker, str(previous))
    _ensure_endpoint_config(sagemaker, config, model, settings, capture_uri=capture_uri, previous=replaced)
    if current is None:
        arn = sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)["EndpointArn"]
        action = "created"
    elif previous == config:
        return Deployment(endpoint, config, model, package_arn, "unchanged")
    else:
        arn = sagemaker.update_endpoint(
            EndpointName=endpoint,
            EndpointConfigName=config,
            DeploymentConfig=cast(
                "DeploymentConfigTypeDef", deployment_config(settings.serving.deployment, rollback_alarms)
            ),
        )["EndpointArn"]
        action = "updated"
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": REQUESTED_TAG, "Value": config}])
    return Deployment(endpoint, config, model, package_arn, action)


@dataclass
class Outcome:
    """How a deployment ended: ``deployed`` (the endpoint serves what was asked for) or ``rolled_back``
    (it serves the previous model again; ``reason`` is SageMaker's, ``alarm`` the one that fired)."""

    endpoint_name: str
    endpoint_config_name: str
    model_package_arn: str
    outcome: str
    reason: str = ""
    alarm: str = ""


def outcome(settings: Settings, detail: dict[str, Any], *, sagemaker: SageMakerClient) -> Outcome | None:
    """The end of the deployment an endpoint state change concludes, or None (not ours, not ended, or
    already concluded). Concluding it clears the endpoint's requested-config tag, so a redelivered
    event concludes nothing twice."""
    if detail.get("EndpointName") != settings.endpoint_name or detail.get("EndpointStatus") != "InService":
        return None
    arn = detail["EndpointArn"]
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    requested = tags.get(REQUESTED_TAG)
    if not requested:
        return None
    described = sagemaker.describe_endpoint(EndpointName=settings.endpoint_name)
    serving = described["EndpointConfigName"]
    sagemaker.delete_tags(ResourceArn=arn, TagKeys=[REQUESTED_TAG])
    package = package_of(sagemaker, requested)
    if serving == requested:
        return Outcome(settings.endpoint_name, requested, package, "deployed")
    reason = str(described.get("FailureReason") or "the endpoint returned to its previous configuration")
    found = _ALARM_IN_REASON.search(reason)
    return Outcome(
        settings.endpoint_name, requested, package, "rolled_back", reason, found.group(1) if found else ""
    )


def config_tags(sagemaker: SageMakerClient, config_name: str) -> dict[str, str]:
    arn = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["EndpointConfigArn"]
    return {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}


def production_config(sagemaker: SageMakerClient, config_name: str) -> str:
    """The config without any shadow: ``config_name`` itself, or the one a shadow config was added to."""
    tags = config_tags(sagemaker, config_name)
    return tags.get(PREVIOUS_CONFIG_TAG, config_name) if SHADOW_TAG in tags else config_name


def package_of(sagemaker: SageMakerClient, config_name: str) -> str:
    """The model package a config of ours serves (the tag deploy() put on its model)."""
    config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=model["ModelArn"])["Tags"]}
    return str(tags.get(PACKAGE_TAG, ""))


def rollback(settings: Settings, *, sagemaker: SageMakerClient) -> Deployment:
    """Return the endpoint to the model it served before the current one, all at once (by hand)."""
    current = current_endpoint(sagemaker, settings.endpoint_name)
    if current is None:
        raise LookupError(f"endpoint {settings.endpoint_name} does not exist")
    if current["EndpointStatus"] != "InService":
        raise ValueError(
            f"endpoint {settings.endpoint_name} is {current['EndpointStatus']}: wait for InService"
        )
    config = sagemaker.describe_endpoint_config(EndpointConfigName=current["EndpointConfigName"])
    tags = {
        t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=config["EndpointConfigArn"])["Tags"]
    }
    previous = tags.get(PREVIOUS_CONFIG_TAG)
    if not previous:
        raise LookupError(f"{current['EndpointConfigName']} records no previous model to return to")
    earlier = sagemaker.describe_endpoint_config(EndpointConfigName=previous)
    model = earlier["ProductionVariants"][0]["ModelName"]
    model_tags = sagemaker.list_tags(ResourceArn=sagemaker.describe_model(ModelName=model)["ModelArn"])[
        "Tags"
    ]
    package = {t["Key"]: t["Value"] for t in model_tags}.get(PACKAGE_TAG, "")
    arn = sagemaker.update_endpoint(EndpointName=settings.endpoint_name, EndpointConfigName=previous)[
        "EndpointArn"
    ]
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": REQUESTED_TAG, "Value": previous}])
    return Deployment(settings.endpoint_name, previous, model, package, "rolled_back")


#: Application Auto Scaling's names for an endpoint variant's instance count.
SCALABLE_DIMENSION: Final = "sagemaker:variant:DesiredInstanceCount"


def scaling_resource(settings: Settings) -> str:
    return f"endpoint/{settings.endpoint_name}/variant/{VARIANT}"


def ensure_autoscaling(settings: Settings, *, autoscaling: ApplicationAutoScalingClient) -> bool:
    """Target tracking on invocations per instance for the endpoint's variant, between the settings'
    minimum and maximum instance counts (both calls create or update: safe to repeat). Called once a
    deployment concluded, since SageMaker's variant must exist and be InService. False when serverless:
    SageMaker scales those itself."""
    if settings.serving.serverless is not None:
        return False
    serving, resource = settings.serving, scaling_resource(settings)
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        MinCapacity=serving.min_instances,
        MaxCapacity=serving.max_instances,
    )
    autoscaling.put_scaling_policy(
        PolicyName=f"{settings.prefix}-invocations-per-instance",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(serving.target_invocations_per_instance),
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            # Out fast, in slowly: a brief lull must not take away capacity the next burst needs.
            "ScaleOutCooldown": 60,
            "ScaleInCooldown": 300,
        },
    )
    return True
