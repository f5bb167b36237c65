"""The model registry: SageMaker model package groups and packages.

A version is registered only after it passes the quality gate and the model tests, in one
``CreateModelPackage`` call with its metrics, evaluation report, test report, drift baselines and lineage,
so a failure before that leaves nothing half-registered and a retried step (same client token) registers
nothing twice. The champion is the newest Approved version.

Where a package keeps what (``describe_model_package``):
- ``ModelMetrics.ModelQuality.Statistics``: ``evaluation.json`` (metrics, test report, baselines);
- ``ModelMetrics.ModelQuality.Constraints``: ``model_tests.json`` (the post-training checks and results);
- ``ModelMetrics.ModelDataQuality.Statistics`` and ``DriftCheckBaselines.ModelDataQuality.Statistics``:
  ``baseline.json`` (per-feature sketches of the training set, the drift monitors' reference);
- ``CustomerMetadataProperties``: ``metric:{name}`` values, ``model_tests`` (the report's summary),
  ``champion_comparison`` (what the approval compared: the recent labelled window or the registered test
  metrics, with both values) and lineage (training set id and manifest, code version, parameters,
  training/evaluation jobs, execution).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings
from mlcycle.security import CODE_CHANNEL

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker.literals import ModelApprovalStatusType
    from mypy_boto3_sagemaker.type_defs import InferenceSpecificationTypeDef

APPROVED: Final = "Approved"
PENDING: Final = "PendingManualApproval"
REJECTED: Final = "Rejected"
METRIC_PREFIX = "metric:"


#: SageMaker's limits on CustomerMetadataProperties values.
METADATA_VALUE_LIMIT = 256
MODEL_TESTS_KEY = "model_tests"
EVALUATION_FILE = "evaluation.json"
MODEL_TESTS_FILE = "model_tests.json"
BASELINE_FILE = "baseline.json"
JSON = "application/json"


class QualityGateFailed(Exception):
    """The model does not meet the configured threshold; it is not registered."""


class ModelTestsFailed(Exception):
    """The evaluation's post-training tests failed; the model is not registered."""


@dataclass
class TrainingJobResult:
    job_name: str
    model_data_url: str
    image: str
    evaluation_uri: str
    metrics: dict[str, float]
    model_tests_uri: str = ""
    baseline_uri: str = ""
    model_tests: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    #: The evaluation's ``recent``: the challenger's and the champion's metrics on the recent labelled rows.
    recent: dict[str, Any] | None = None


#: What a challenger was compared with the champion on.
RECENT_BASIS, TEST_BASIS = "recent_window", "registered_test_metrics"
COMPARISON_KEY = "champion_comparison"


@dataclass(frozen=True)
class Comparison:
    """The primary metric of the challenger and of the champion, measured alike: on the recent labelled
    rows (``recent_window``), or the challenger's test split against the champion's registered value."""

    basis: str
    challenger: float
    champion: float | None
    rows: int | None = None

    def describe(self) -> str:
        where = f"recent window, {self.rows} rows" if self.basis == RECENT_BASIS else self.basis
        champion = "none" if self.champion is None else f"{self.champion:.6g}"
        return f"{where}: challenger {self.challenger:.6g}, champion {champion}"


@dataclass
class Registration:
    model_package_arn: str
    version: int
    approval_status: str
    metric: str
    #: The challenger's primary metric on its test split (the quality gate's value).
    value: float
    #: The champion's value the challenger was compared with, on ``basis``.
    champion_value: float | None
    basis: str = TEST_BASIS
    #: The challenger's value compared with ``champion_value`` (``value`` unless on the recent window).
    challenger_value: float | None = None


def read_json(s3: S3Client, uri: str) -> dict[str, Any]:
    bucket, key = split_s3_uri(uri)
    loaded: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return loaded


def check_evaluation(s3: S3Client, evaluation_prefix: str) -> dict[str, Any]:
    """The tests gate: what the evaluation job's report says, in a form a Choice state can branch on."""
    evaluation = read_json(s3, f"{evaluation_prefix.rstrip('/')}/{EVALUATION_FILE}")
    report = evaluation["model_tests"]
    return {
        "passed": bool(report["passed"]),
        "summary": report["summary"],
        "failed": [c["name"] for c in report["checks"] if not c["passed"]],
        "metrics": evaluation["metrics"],
        "evaluation_uri": f"{evaluation_prefix.rstrip('/')}/{EVALUATION_FILE}",
    }


def read_training_job(
    sagemaker: SageMakerClient, s3: S3Client, job_name: str, evaluation_prefix: str
) -> TrainingJobResult:
    """A completed job's model artifact, and what its evaluation job wrote under ``evaluation_prefix``."""
    job = sagemaker.describe_training_job(TrainingJobName=job_name)
    if job["TrainingJobStatus"] != "Completed":
        raise RuntimeError(f"training job {job_name} is {job['TrainingJobStatus']}, not Completed")
    prefix = evaluation_prefix.rstrip("/")
    evaluation = read_json(s3, f"{prefix}/{EVALUATION_FILE}")
    return TrainingJobResult(
        job_name=job_name,
        model_data_url=job["ModelArtifacts"]["S3ModelArtifacts"],
        image=job["AlgorithmSpecification"]["TrainingImage"],
        evaluation_uri=f"{prefix}/{EVALUATION_FILE}",
        metrics={k: float(v) for k, v in evaluation["metrics"].items()},
        model_tests_uri=f"{prefix}/{MODEL_TESTS_FILE}",
        baseline_uri=f"{prefix}/{BASELINE_FILE}",
        model_tests=evaluation["model_tests"],
        # The sourcedir asset's S3 key is the hash of the code it holds: the code version.
        code_version=_code_uri(job),
        recent=evaluation.get("recent"),
    )


def _code_uri(job: Mapping[str, Any]) -> str:
    """Where the job's code came from: its ``code`` channel (network-isolated jobs get the sourcedir
    that way) or the ``sagemaker_submit_directory`` it downloaded."""
    for channel in job.get("InputDataConfig", []):
        if channel["ChannelName"] == CODE_CHANNEL:
            return str(channel["DataSource"]["S3DataSource"]["S3Uri"])
    return str(job.get("HyperParameters", {}).get("sagemaker_submit_directory", "")).strip('"')


def _higher_is_better(metric: str) -> bool:
    return metric not in ("rmse", "mae", "log_loss")


def champion(sagemaker: SageMakerClient, group: str) -> dict[str, Any] | None:
    """The newest Approved package of the group, described, or None."""
    listed = sagemaker.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus=APPROVED,
        SortBy="CreationTime",
        SortOrder="Descending",
    )["ModelPackageSummaryList"]
    if not listed:
        return None
    described: Mapping[str, Any] = sagemaker.describe_model_package(
        ModelPackageName=listed[0]["ModelPackageArn"]
    )
    return dict(described)


def champion_summary(sagemaker: SageMakerClient, group: str) -> dict[str, Any] | None:
    """The champion's version, ARN and metrics (what a challenger is compared with), or None."""
    current = champion(sagemaker, group)
    if current is None:
        return None
    return {
        "version": int(current["ModelPackageVersion"]),
        "arn": current["ModelPackageArn"],
        "metrics": _metrics(current.get("CustomerMetadataProperties", {})),
    }


def _metrics(metadata: dict[str, str]) -> dict[str, float]:
    return {
        k.removeprefix(METRIC_PREFIX): float(v) for k, v in metadata.items() if k.startswith(METRIC_PREFIX)
    }


def decide_approval(
    settings: Settings, value: float, champion_value: float | None
) -> ModelApprovalStatusType:
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


def comparison(
    settings: Settings, result: TrainingJobResult, value: float, champion: dict[str, Any] | None
) -> Comparison:
    """Both models on the recent labelled rows when the evaluation has at least ``min_labelled_rows`` of
    them with the primary metric on both sides; else the test split against the registered metrics."""
    metric, recent = settings.problem.primary_metric, result.recent or {}
    rows = int(recent.get("rows", 0))
    ours, theirs = recent.get("challenger") or {}, recent.get("champion") or {}
    if rows >= settings.monitoring.min_labelled_rows and metric in ours and metric in theirs:
        return Comparison(RECENT_BASIS, float(ours[metric]), float(theirs[metric]), rows)
    registered = champion["metrics"].get(metric) if champion else None
    return Comparison(TEST_BASIS, value, registered)


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
    sagemaker: SageMakerClient,
    container_environment: Mapping[str, str] | None = None,
) -> Registration:
    """Gate, tests, champion comparison, then one ``CreateModelPackage`` with everything attached
    (``container_environment`` is added to the inference container's)."""
    value = quality_gate(settings, result.metrics)
    if result.model_tests and not result.model_tests.get("passed", False):
        # The pipeline's gate stops before this step; a direct caller must not get around it either.
        raise ModelTestsFailed(result.model_tests.get("summary", "post-training tests failed"))
    group = settings.model_package_group
    compared = comparison(settings, result, value, champion_summary(sagemaker, group))
    status = decide_approval(settings, compared.challenger, compared.champion)
    created = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"{settings.problem.model.family} trained by {result.job_name}",
        # Same job -> same token: a retried step cannot register the model twice.
        ClientToken=hashlib.sha256(result.job_name.encode()).hexdigest()[:36],
        InferenceSpecification=cast(
            "InferenceSpecificationTypeDef",
            _inference_specification(settings, result, container_environment or {}),
        ),
        **_reports(result),
        CustomerMetadataProperties=package_metadata(result, lineage | {COMPARISON_KEY: compared.describe()}),
        ModelApprovalStatus=status,
    )
    arn = created["ModelPackageArn"]
    return Registration(
        model_package_arn=arn,
        version=int(arn.rsplit("/", 1)[1]),
        approval_status=status,
        metric=settings.problem.primary_metric,
        value=value,
        champion_value=compared.champion,
        basis=compared.basis,
        challenger_value=compared.challenger,
    )


def _inference_specification(
    settings: Settings, result: TrainingJobResult, environment: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "Containers": [
            {
                "Image": result.image,
                "ModelDataUrl": result.model_data_url,
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    **environment,
                },
            }
        ],
        "SupportedContentTypes": ["text/csv", "application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
        "SupportedRealtimeInferenceInstanceTypes": [settings.instances.endpoint],
    }


def _reports(result: TrainingJobResult) -> dict[str, Any]:
    """ModelMetrics and DriftCheckBaselines: the evaluation, the test report and the drift baselines."""
    quality: dict[str, Any] = {"Statistics": {"ContentType": JSON, "S3Uri": result.evaluation_uri}}
    reports: dict[str, Any] = {"ModelMetrics": {"ModelQuality": quality}}
    if result.model_tests_uri:
        quality["Constraints"] = {"ContentType": JSON, "S3Uri": result.model_tests_uri}
    if result.baseline_uri:
        baseline = {"Statistics": {"ContentType": JSON, "S3Uri": result.baseline_uri}}
        reports["ModelMetrics"]["ModelDataQuality"] = baseline
        reports["DriftCheckBaselines"] = {"ModelDataQuality": baseline}
    return reports


def package_metadata(result: TrainingJobResult, lineage: dict[str, str]) -> dict[str, str]:
    """Lineage, metrics and the test summary, each value cut to SageMaker's 256 characters."""
    metadata = {
        **lineage,
        "code_version": result.code_version,
        **{METRIC_PREFIX + k: f"{v:.6g}" for k, v in result.metrics.items()},
    }
    if result.model_tests:
        metadata[MODEL_TESTS_KEY] = str(result.model_tests.get("summary", ""))
    return {k: v[:METADATA_VALUE_LIMIT] for k, v in metadata.items() if v}


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
    model_tests: str = ""
    #: Report name (``evaluation``, ``model_tests``, ``baseline``) -> S3 URI.
    reports: dict[str, str] = field(default_factory=dict)


def _version(described: Mapping[str, Any]) -> Version:
    metadata: dict[str, str] = described.get("CustomerMetadataProperties", {})
    containers = described.get("InferenceSpecification", {}).get("Containers", [{}])
    return Version(
        version=int(described["ModelPackageVersion"]),
        arn=described["ModelPackageArn"],
        approval_status=described["ModelApprovalStatus"],
        created=str(described.get("CreationTime", "")),
        metrics=_metrics(metadata),
        lineage={
            k: v for k, v in metadata.items() if not k.startswith(METRIC_PREFIX) and k != MODEL_TESTS_KEY
        },
        model_data_url=containers[0].get("ModelDataUrl", ""),
        description=described.get("ApprovalDescription", described.get("ModelPackageDescription", "")),
        model_tests=metadata.get(MODEL_TESTS_KEY, ""),
        reports=_report_uris(described.get("ModelMetrics") or {}),
    )


def _report_uris(model_metrics: dict[str, Any]) -> dict[str, str]:
    quality = model_metrics.get("ModelQuality") or {}
    found = {
        "evaluation": (quality.get("Statistics") or {}).get("S3Uri"),
        "model_tests": (quality.get("Constraints") or {}).get("S3Uri"),
        "baseline": ((model_metrics.get("ModelDataQuality") or {}).get("Statistics") or {}).get("S3Uri"),
    }
    return {name: uri for name, uri in found.items() if uri}


def versions(sagemaker: SageMakerClient, group: str) -> list[Version]:
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


def get_version(sagemaker: SageMakerClient, group: str, ref: str) -> Version:
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


def set_approval(
    sagemaker: SageMakerClient, group: str, ref: str, status: ModelApprovalStatusType, reason: str
) -> Version:
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


#: On a model package: how its last deployment ended (``deployed`` or ``rolled_back: {reason}``).
DEPLOYMENT_PROPERTY = "deployment"


def record_deployment_outcome(
    sagemaker: SageMakerClient, package_arn: str, outcome: str, reason: str = ""
) -> None:
    """Write a deployment's outcome on the model package (its other metadata is kept)."""
    described = sagemaker.describe_model_package(ModelPackageName=package_arn)
    metadata = dict(described.get("CustomerMetadataProperties", {}))
    metadata[DEPLOYMENT_PROPERTY] = (f"{outcome}: {reason}" if reason else outcome)[:METADATA_VALUE_LIMIT]
    sagemaker.update_model_package(ModelPackageArn=package_arn, CustomerMetadataProperties=metadata)
