"""SageMaker fixtures for the embedded AWS, shared by ``test_sagemaker_jobs`` and ``test_endpoints``.

Not a ``conftest.py`` (that one belongs to the embedded AWS as a whole): test modules import what they use
from here explicitly. Everything runs on the session's ``embedded_aws``; names are unique per test so
nothing needs resetting.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle.local.server import EmbeddedAws

Client = Callable[[str], Any]
FIXTURES = Path(__file__).with_name("sagemaker_fixtures")
ROLE = "arn:aws:iam::123456789012:role/sagemaker-tests"
TERMINAL = ("Completed", "Failed", "Stopped")
#: The SageMaker SDK JSON-encodes every hyperparameter value; the local runner must accept both forms.
SDK_ENCODED = {"sagemaker_program": json.dumps("train.py")}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read_tar(s3: Any, uri: str) -> dict[str, bytes]:
    """Every regular file of an S3 tar.gz, by member name."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


@dataclass(frozen=True)
class SageMakerWorld:
    """A bucket holding the fixture source dir and a CSV training channel."""

    bucket: str
    sourcedir: str
    train_data: str
    features: np.ndarray
    labels: np.ndarray

    def training_request(
        self,
        name: str,
        *,
        hyperparameters: dict[str, str] | None = None,
        max_runtime: int = 120,
        train_uri: str | None = None,
    ) -> dict[str, Any]:
        """A CreateTrainingJob request as the pipeline writes it (scikit-learn container contract)."""
        return {
            "TrainingJobName": name,
            "AlgorithmSpecification": {
                "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0",
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "train:accuracy", "Regex": r"train:accuracy=([0-9.]+)"}],
            },
            "RoleArn": ROLE,
            "HyperParameters": {
                **SDK_ENCODED,
                "sagemaker_submit_directory": self.sourcedir,  # a raw string: both forms must work
                "sagemaker_region": json.dumps("us-east-1"),
                **(hyperparameters or {}),
            },
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": train_uri or self.train_data}
                    },
                    "ContentType": "text/csv",
                }
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{self.bucket}/training-jobs"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
            "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
        }


@pytest.fixture(scope="package")
def sm_world(embedded_aws: EmbeddedAws, aws_client: Client) -> SageMakerWorld:
    s3 = aws_client("s3")
    bucket = unique("sagemaker-tests")
    s3.create_bucket(Bucket=bucket)
    sources = {p.name: p.read_bytes() for p in FIXTURES.glob("*.py")}
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=tar_gz(sources))
    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 3))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    rows = "\n".join(
        ",".join(str(v) for v in [label, *row]) for label, row in zip(labels, features, strict=True)
    )
    s3.put_object(Bucket=bucket, Key="training-sets/t1/train/data.csv", Body=rows.encode())
    return SageMakerWorld(
        bucket=bucket,
        sourcedir=f"s3://{bucket}/code/sourcedir.tar.gz",
        train_data=f"s3://{bucket}/training-sets/t1/train",
        features=features,
        labels=labels,
    )


def wait_for_job(aws_client: Client, wait_for: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    """DescribeTrainingJob once the job reaches a terminal status."""

    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = aws_client("sagemaker").describe_training_job(TrainingJobName=name)
        return job if job["TrainingJobStatus"] in TERMINAL else None

    result: dict[str, Any] = wait_for(done, timeout=timeout, what=f"training job {name}")
    return result


@dataclass(frozen=True)
class TrainedJob:
    name: str
    status_at_creation: str
    description: dict[str, Any]

    @property
    def model_data(self) -> str:
        return str(self.description["ModelArtifacts"]["S3ModelArtifacts"])


@pytest.fixture(scope="package")
def trained_job(sm_world: SageMakerWorld, aws_client: Client, wait_for: Any) -> TrainedJob:
    """One real training job, run once for every test that needs a trained model."""
    name = unique("train")
    sagemaker = aws_client("sagemaker")
    request = sm_world.training_request(name, hyperparameters={"regularization": "0.5", "max_iter": "200"})
    sagemaker.create_training_job(**request)
    status = sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
    return TrainedJob(name, status, wait_for_job(aws_client, wait_for, name))


def create_model(aws_client: Client, model_data: str, *, program: str | None = "inference.py") -> str:
    """A SageMaker model as deploy-model creates it: the trained artifact plus the serving environment."""
    name = unique("model")
    environment = {"SAGEMAKER_PROGRAM": program, "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    aws_client("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0",
            "ModelDataUrl": model_data,
            "Environment": environment if program else {},
        },
    )
    return name


def create_endpoint_config(
    aws_client: Client, variants: dict[str, str], *, capture_uri: str | None = None, sampling: int = 100
) -> str:
    """An endpoint config with one variant per ``{variant: model}``, and data capture if asked."""
    name = unique("config")
    extra: dict[str, Any] = {}
    if capture_uri:
        extra["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": sampling,
            "DestinationS3Uri": capture_uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        }
    aws_client("sagemaker").create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1.0,
            }
            for variant, model in variants.items()
        ],
        **extra,
    )
    return name


def wait_for_endpoint(aws_client: Client, wait_for: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    """DescribeEndpoint once the endpoint leaves Creating/Updating."""

    def settled() -> dict[str, Any] | None:
        endpoint: dict[str, Any] = aws_client("sagemaker").describe_endpoint(EndpointName=name)
        return None if endpoint["EndpointStatus"] in ("Creating", "Updating") else endpoint

    result: dict[str, Any] = wait_for(settled, timeout=timeout, what=f"endpoint {name}")
    return result
