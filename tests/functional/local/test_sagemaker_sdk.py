"""The SageMaker Python SDK (v3, ``sagemaker-core``) as a user's client of the embedded AWS.

A user points the SDK at the embedded AWS as any botocore client: ``AWS_ENDPOINT_URL`` (which
``mlcycle local up`` prints and ``server.start`` exports here), or a profile whose ``endpoint_url`` names
it. The SDK then describes and invokes an endpoint serving a trained model and lists a model package
group's versions with their approval status, through the same moto hooks boto3 reaches.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pytest

from mlcycle.local.server import EmbeddedAws
from tests.functional.local import conftest_sagemaker
from tests.functional.local.conftest_sagemaker import (
    Client,
    SageMakerWorld,
    TrainedJob,
    create_endpoint_config,
    create_model,
    read_tar,
    unique,
    wait_for_endpoint,
)

pytest.importorskip("sagemaker.core.resources", reason="the `sagemaker` extra: pip install -e '.[sagemaker]'")

from sagemaker.core.deserializers import JSONDeserializer
from sagemaker.core.resources import Endpoint, ModelPackage, ModelPackageGroup
from sagemaker.core.serializers import CSVSerializer
from sagemaker.core.utils.utils import SageMakerClient

# The shared fixtures, bound here so pytest finds them (conftest.py belongs to the embedded AWS as a whole).
sm_world = conftest_sagemaker.sm_world
trained_job = conftest_sagemaker.trained_job

JSON = "application/json"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0"


@pytest.fixture(autouse=True)
def sdk_clients(embedded_aws: EmbeddedAws) -> Iterator[None]:
    """The SDK caches its boto3 clients per process: each test builds them against this embedded AWS
    (``AWS_ENDPOINT_URL`` as ``server.start`` exported it) and leaves none behind for another one."""
    assert boto3.Session().client("sagemaker").meta.endpoint_url == embedded_aws.endpoint_url
    SageMakerClient.reset()
    yield
    SageMakerClient.reset()


@pytest.fixture(scope="module")
def endpoint_name(
    trained_job: TrainedJob, aws_client: Client, wait_for: Any, embedded_aws: EmbeddedAws
) -> Iterator[str]:
    """The trained model behind an endpoint, created as deploy-model creates it (boto3)."""
    name = unique("sdk-endpoint")
    model = create_model(aws_client, trained_job.model_data)
    config = create_endpoint_config(aws_client, {"AllTraffic": model})
    aws_client("sagemaker").create_endpoint(EndpointName=name, EndpointConfigName=config)
    described = wait_for_endpoint(aws_client, wait_for, name)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    yield name
    aws_client("sagemaker").delete_endpoint(EndpointName=name)


@pytest.fixture(scope="module")
def estimator(trained_job: TrainedJob, aws_client: Client) -> Any:
    """The trained model itself, out of its ``model.tar.gz``."""
    return joblib.load(io.BytesIO(read_tar(aws_client("s3"), trained_job.model_data)["model.joblib"]))


def _csv(rows: np.ndarray) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in rows)


def _boto3_invoke(aws_client: Client, name: str, body: str, content_type: str, accept: str) -> bytes:
    response = aws_client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=body, ContentType=content_type, Accept=accept
    )
    data: bytes = response["Body"].read()
    return data


# ---- endpoints ---------------------------------------------------------------------------------------------


def test_endpoint_get_describes_the_endpoint(endpoint_name: str) -> None:
    endpoint = Endpoint.get(endpoint_name)
    assert endpoint.endpoint_status == "InService"
    assert endpoint.endpoint_arn.endswith(f":endpoint/{endpoint_name}")
    [variant] = endpoint.production_variants
    assert variant.variant_name == "AllTraffic"
    assert Endpoint.get(endpoint_name).refresh().endpoint_status == "InService"
    assert endpoint_name in [e.endpoint_name for e in Endpoint.get_all(name_contains=endpoint_name)]


@pytest.mark.parametrize("content_type", ["text/csv", "application/json"])
def test_invoke_gives_what_boto3_invoke_endpoint_gives(
    endpoint_name: str, sm_world: SageMakerWorld, aws_client: Client, estimator: Any, content_type: str
) -> None:
    rows = sm_world.features[:9]
    body = _csv(rows) if content_type == "text/csv" else json.dumps(rows.tolist())
    response = Endpoint.get(endpoint_name).invoke(body=body, content_type=content_type, accept=JSON)
    assert response.content_type == JSON
    assert response.invoked_production_variant == "AllTraffic"
    answer = response.body.read()
    assert answer == _boto3_invoke(aws_client, endpoint_name, body, content_type, JSON)
    result = json.loads(answer)
    assert result["predictions"] == estimator.predict(rows).tolist()
    assert result["probabilities"] == pytest.approx(estimator.predict_proba(rows)[:, 1].tolist())


def test_invoke_with_the_sdks_serializer_and_deserializer(
    endpoint_name: str, sm_world: SageMakerWorld, aws_client: Client
) -> None:
    rows = sm_world.features[:5]
    endpoint = Endpoint.get(endpoint_name)
    endpoint.serializer = CSVSerializer()
    endpoint.deserializer = JSONDeserializer()
    response = endpoint.invoke(body=rows, content_type="text/csv", accept=JSON)
    expected = json.loads(_boto3_invoke(aws_client, endpoint_name, _csv(rows), "text/csv", JSON))
    assert response.body == expected


def test_endpoint_url_from_a_profile(
    endpoint_name: str,
    embedded_aws: EmbeddedAws,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``AWS_ENDPOINT_URL``: a profile naming the embedded AWS, passed to the SDK as a session."""
    config = tmp_path / "config"
    config.write_text(
        f"[profile mlcycle-local]\nendpoint_url = {embedded_aws.endpoint_url}\n"
        f"region = {embedded_aws.ctx.region}\n"
        # An explicit profile reads no credentials from the environment: any pair will do.
        "aws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    session = boto3.Session(profile_name="mlcycle-local")
    endpoint = Endpoint.get(endpoint_name, session=session, region=embedded_aws.ctx.region)
    assert endpoint.endpoint_status == "InService"
    response = endpoint.invoke(body="0.1,0.2,0.3", content_type="text/csv", accept="application/json")
    assert len(json.loads(response.body.read())["predictions"]) == 1


# ---- the model registry ----------------------------------------------------------------------------------


def _register(aws_client: Client, group: str, status: str, job: TrainedJob, bucket: str) -> str:
    """One model package as register-model creates it (boto3): inference spec, reports, metadata."""
    report = {"ContentType": "application/json", "S3Uri": f"s3://{bucket}/evaluation.json"}
    created = aws_client("sagemaker").create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"trained by {job.name}",
        InferenceSpecification={
            "Containers": [
                {
                    "Image": IMAGE,
                    "ModelDataUrl": job.model_data,
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                }
            ],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
        },
        ModelMetrics={"ModelQuality": {"Statistics": report}},
        DriftCheckBaselines={"ModelDataQuality": {"Statistics": report}},
        CustomerMetadataProperties={"metric:roc_auc": "0.9", "training_job": job.name},
        ModelApprovalStatus=status,
    )
    return str(created["ModelPackageArn"])


def _group(aws_client: Client) -> str:
    group = unique("sdk-group")
    aws_client("sagemaker").create_model_package_group(ModelPackageGroupName=group)
    return group


def test_model_packages_of_a_group_with_their_approval_status(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client
) -> None:
    group = _group(aws_client)
    statuses = {
        _register(aws_client, group, status, trained_job, sm_world.bucket): status
        for status in ("Approved", "PendingManualApproval", "Rejected")
    }

    packages = list(ModelPackage.get_all(model_package_group_name=group))
    assert {p.model_package_arn: p.model_approval_status for p in packages} == statuses
    assert [p.model_package_version for p in packages] == [1, 2, 3]
    first = packages[0]
    assert first.model_package_group_name == group
    assert first.customer_metadata_properties == {"metric:roc_auc": "0.9", "training_job": trained_job.name}
    assert first.model_metrics.model_quality.statistics.s3_uri == f"s3://{sm_world.bucket}/evaluation.json"
    [container] = first.inference_specification.containers
    assert container.model_data_url == trained_job.model_data
    approved = ModelPackage.get_all(model_package_group_name=group, model_approval_status="Approved")
    assert [p.model_package_version for p in approved] == [1]
    assert ModelPackageGroup.get(group).model_package_group_status == "Completed"


def test_approval_changed_through_the_sdk(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client
) -> None:
    arn = _register(aws_client, _group(aws_client), "PendingManualApproval", trained_job, sm_world.bucket)
    package = ModelPackage.get(arn)
    package.update(model_approval_status="Approved", approval_description="approved with the SDK")
    described = aws_client("sagemaker").describe_model_package(ModelPackageName=arn)
    assert described["ModelApprovalStatus"] == "Approved"
    assert ModelPackage.get(arn).model_approval_status == "Approved"
