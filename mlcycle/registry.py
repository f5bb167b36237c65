"""The model registry: SageMaker model package groups and packages.

A version is registered only after it passes the quality gate, in one ``CreateModelPackage`` call with
its metrics, evaluation report and lineage, so a failure before that leaves nothing half-registered and
a retried step (same client token) registers nothing twice. The champion is the newest Approved version.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings

APPROVED = "Approved"
PENDING = "PendingManualApproval"
REJECTED = "Rejected"
METRIC_PREFIX = "metric:"


class QualityGateFailed(Exception):
    """The model does not meet the configured threshold; it is not registered."""


@dataclass
class TrainingJobResult:
    job_name: str
    model_data_url: str
    image: str
    evaluation_uri: str
    metrics: dict[str, float]


@dataclass
class Registration:
    model_package_arn: str
    version: int
    approval_status: str
    metric: str
    value: float
    champion_value: float | None


def read_training_job(sagemaker: Any, s3: Any, job_name: str) -> TrainingJobResult:
    """The model artifact and metrics of a completed job (metrics from output.tar.gz/evaluation.json)."""
    job = sagemaker.describe_training_job(TrainingJobName=job_name)
    if job["TrainingJobStatus"] != "Completed":
        raise RuntimeError(f"training job {job_name} is {job['TrainingJobStatus']}, not Completed")
    model_url = job["ModelArtifacts"]["S3ModelArtifacts"]
    output_url = model_url.rsplit("/", 1)[0] + "/output.tar.gz"
    bucket, key = split_s3_uri(output_url)
    raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        member = tar.extractfile("evaluation.json")
        if member is None:
            raise RuntimeError(f"{output_url} holds no evaluation.json")
        report = json.load(member)
    evaluation_key = key.rsplit("/", 1)[0] + "/evaluation.json"
    s3.put_object(Bucket=bucket, Key=evaluation_key, Body=json.dumps(report, indent=2).encode())
    return TrainingJobResult(
        job_name=job_name,
        model_data_url=model_url,
        image=job["AlgorithmSpecification"]["TrainingImage"],
        evaluation_uri=f"s3://{bucket}/{evaluation_key}",
        metrics={k: float(v) for k, v in report["metrics"].items()},
    )


def _higher_is_better(metric: str) -> bool:
    return metric not in ("rmse", "mae", "log_loss")


def champion(sagemaker: Any, group: str) -> dict[str, Any] | None:
    """The newest Approved package of the group, described, or None."""
    listed = sagemaker.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus=APPROVED,
        SortBy="CreationTime",
        SortOrder="Descending",
    )["ModelPackageSummaryList"]
    if not listed:
        return None
    described: dict[str, Any] = sagemaker.describe_model_package(
        ModelPackageName=listed[0]["ModelPackageArn"]
    )
    return described


def decide_approval(settings: Settings, value: float, champion_value: float | None) -> str:
    """Auto-approve a first model that passes the gate, or a challenger beating the champion by the margin."""
    if not settings.thresholds.auto_approve:
        return PENDING
    if champion_value is None:
        return APPROVED
    margin = settings.thresholds.auto_approve_margin
    better = (
        value >= champion_value + margin
        if _higher_is_better(settings.problem.primary_metric)
        else (value <= champion_value - margin)
    )
    return APPROVED if better else PENDING


def quality_gate(settings: Settings, metrics: dict[str, float]) -> float:
    metric = settings.problem.primary_metric
    if metric not in metrics:
        raise QualityGateFailed(f"evaluation has no {metric!r} (has {sorted(metrics)})")
    value, threshold = metrics[metric], settings.thresholds.min_primary_metric
    passes = value >= threshold if _higher_is_better(metric) else value <= threshold
    if not passes:
        raise QualityGateFailed(f"{metric} = {value:.4f} does not meet the threshold {threshold}")
    return value


def register(
    settings: Settings,
    result: TrainingJobResult,
    lineage: dict[str, str],
    *,
    sagemaker: Any,
) -> Registration:
    value = quality_gate(settings, result.metrics)
    group = settings.model_package_group
    current = champion(sagemaker, group)
    champion_value = None
    if current is not None:
        stored = current.get("CustomerMetadataProperties", {}).get(
            METRIC_PREFIX + settings.problem.primary_metric
        )
        champion_value = float(stored) if stored is not None else None
    status = decide_approval(settings, value, champion_value)
    metadata = {**lineage, **{METRIC_PREFIX + k: f"{v:.6g}" for k, v in result.metrics.items()}}
    created = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"{settings.problem.model.family} trained by {result.job_name}",
        # Same job -> same token: a retried step cannot register the model twice.
        ClientToken=hashlib.sha256(result.job_name.encode()).hexdigest()[:36],
        InferenceSpecification={
            "Containers": [
                {
                    "Image": result.image,
                    "ModelDataUrl": result.model_data_url,
                    "Environment": {
                        "SAGEMAKER_PROGRAM": "inference.py",
                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    },
                }
            ],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": [settings.instances.endpoint],
        },
        ModelMetrics={
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": result.evaluation_uri}
            }
        },
        CustomerMetadataProperties=metadata,
        ModelApprovalStatus=status,
    )
    arn = created["ModelPackageArn"]
    return Registration(
        model_package_arn=arn,
        version=int(arn.rsplit("/", 1)[1]),
        approval_status=status,
        metric=settings.problem.primary_metric,
        value=value,
        champion_value=champion_value,
    )


@dataclass
class Version:
    """One registered model version as the CLI shows it."""

    version: int
    arn: str
    approval_status: str
    created: str
    metrics: dict[str, float]
    lineage: dict[str, str]
    model_data_url: str
    description: str = ""


def _version(described: dict[str, Any]) -> Version:
    metadata: dict[str, str] = described.get("CustomerMetadataProperties", {})
    containers = described.get("InferenceSpecification", {}).get("Containers", [{}])
    return Version(
        version=int(described["ModelPackageVersion"]),
        arn=described["ModelPackageArn"],
        approval_status=described["ModelApprovalStatus"],
        created=str(described.get("CreationTime", "")),
        metrics={
            k.removeprefix(METRIC_PREFIX): float(v)
            for k, v in metadata.items()
            if k.startswith(METRIC_PREFIX)
        },
        lineage={k: v for k, v in metadata.items() if not k.startswith(METRIC_PREFIX)},
        model_data_url=containers[0].get("ModelDataUrl", ""),
        description=described.get("ApprovalDescription", described.get("ModelPackageDescription", "")),
    )


def versions(sagemaker: Any, group: str) -> list[Version]:
    """Every version of the group, newest first."""
    paginator = sagemaker.get_paginator("list_model_packages")
    arns = [
        summary["ModelPackageArn"]
        for page in paginator.paginate(
            ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending"
        )
        for summary in page["ModelPackageSummaryList"]
    ]
    found = [_version(sagemaker.describe_model_package(ModelPackageName=arn)) for arn in arns]
    return sorted(found, key=lambda v: v.version, reverse=True)


def get_version(sagemaker: Any, group: str, ref: str) -> Version:
    """A version by number (``3``), ``champion``, or ARN."""
    if ref == "champion":
        current = champion(sagemaker, group)
        if current is None:
            raise LookupError(f"group {group} has no approved version")
        return _version(current)
    arn = ref if ref.startswith("arn:") else None
    if arn is None:
        if not ref.isdigit():
            raise LookupError(f"{ref!r} is neither a version number, 'champion', nor a model package ARN")
        matches = [v for v in versions(sagemaker, group) if v.version == int(ref)]
        if not matches:
            raise LookupError(f"group {group} has no version {ref}")
        return matches[0]
    return _version(sagemaker.describe_model_package(ModelPackageName=arn))


def set_approval(sagemaker: Any, group: str, ref: str, status: str, reason: str) -> Version:
    """Approve or reject a version; approving emits AWS's state-change event, which deploys it."""
    if status not in (APPROVED, REJECTED):
        raise ValueError(f"status must be {APPROVED} or {REJECTED}")
    target = get_version(sagemaker, group, ref)
    sagemaker.update_model_package(
        ModelPackageArn=target.arn, ModelApprovalStatus=status, ApprovalDescription=reason[:1000]
    )
    return get_version(sagemaker, group, target.arn)


def compare(a: Version, b: Version) -> list[tuple[str, float | None, float | None, float | None]]:
    """(metric, a, b, b - a) for every metric either version has."""
    rows = []
    for name in sorted(set(a.metrics) | set(b.metrics)):
        left, right = a.metrics.get(name), b.metrics.get(name)
        delta = right - left if left is not None and right is not None else None
        rows.append((name, left, right, delta))
    return rows
