"""The training pipeline's own bookkeeping: the run document at the start, the failure report at the end.

``s3://{artifacts}/runs/{execution}/run.json`` pins what a run is judged by (problem, model-test
settings, quality gate, the champion's metrics when it started, the trigger and the recent labelled
window); the evaluation job reads it, and ``recent.parquet`` next to it (a copy of the recent window).
``s3://{artifacts}/failures/{execution}/report.json`` says why a run stopped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from mlcycle import registry
from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

RUNS_PREFIX = "runs/"
#: The recent labelled window's copy under the run prefix (the evaluation job's ``run`` channel).
RECENT_FILE = "recent.parquet"
FAILURES_PREFIX = "failures/"


class FaultInjection(BaseModel):
    """A run that trains a deliberately broken model, to test the deployment guardrails end to end: the
    model it registers fails this share of its predictions once it serves (a 500, as a broken model gives),
    so the rollback alarms must take it back. Named on the model package, so it is never hidden."""

    model_error_rate: float = Field(gt=0, le=1)


class RetrainingTrigger(BaseModel):
    """Why the retraining controller started a run (recorded in the run document and the lineage)."""

    #: ``DriftDetected``, ``ModelQualityDegraded``, ``KpiBreached``..., ``NewData`` or ``Schedule``.
    type: str
    reason: str
    #: The EventBridge id of the event that triggered (or completed) the decision.
    event_id: str = ""
    #: The alert this trigger answers (mlcycle.alerting fingerprint), to thread the run into it.
    alert_fingerprint: str | None = None
    endpoint: str | None = None
    model_version: int | None = None
    report_uri: str | None = None


class RecentWindow(BaseModel):
    """The labelled rows of the latest monitor windows (features, label, the champion's captured score),
    written by the controller as Parquet: the challenger is judged on them against the champion."""

    uri: str
    rows: int = Field(ge=0)
    windows: int = Field(ge=0)
    #: The model version that served (and scored) those rows.
    model_version: int | None = None


class PipelineInput(BaseModel):
    """What a caller may pass when starting the training pipeline."""

    dataset: str | None = None
    poll_seconds: int = Field(default=30, ge=1, le=3600)
    fault_injection: FaultInjection | None = None
    #: Set by the retraining controller: why this run started.
    trigger: RetrainingTrigger | None = None
    #: Set by the retraining controller when the monitors have labelled rows to judge the challenger on.
    recent_window: RecentWindow | None = None


class PipelineRequest(BaseModel):
    """What the state machine hands its first steps: the execution's name and its input."""

    execution_name: str
    input: PipelineInput = PipelineInput()


class InvalidRunError(ValueError):
    """The run's input or the settings it would run with cannot work; nothing was started."""


def settings_problems(settings: Settings) -> list[str]:
    """Model-test settings that name features the problem does not have (or cannot perturb)."""
    problem, tests = settings.problem, settings.model_tests
    numeric = {c.name for c in problem.dataset.columns if c.type in ("int", "float", "bool")}
    found = [
        f"{kind} check on {spec.feature!r}, which is not a feature"
        for kind, specs in (("invariance", tests.invariance), ("directional", tests.directional))
        for spec in specs
        if spec.feature not in problem.features
    ]
    found += [
        f"directional check on {s.feature!r}, which is not numeric"
        for s in tests.directional
        if s.feature not in numeric
    ]
    found += [
        f"invariance check on {s.feature!r} needs values or a delta"
        for s in tests.invariance
        if not s.values and s.delta is None
    ]
    attribute = tests.sensitive_attribute
    if attribute is not None and attribute not in problem.features:
        found.append(f"sensitive attribute {attribute!r} is not a feature")
    return found


def run_document(
    settings: Settings,
    execution_name: str,
    champion: dict[str, Any] | None,
    *,
    recent_window: RecentWindow | None = None,
    trigger: RetrainingTrigger | None = None,
) -> dict[str, Any]:
    return {
        "execution_name": execution_name,
        "problem": json.loads(settings.problem.model_dump_json()),
        "model_tests": json.loads(settings.model_tests.model_dump_json()),
        "min_primary_metric": settings.thresholds.min_primary_metric,
        "champion": champion,
        # The recent window judges against the champion only with at least this many labelled rows.
        "min_labelled_rows": settings.monitoring.min_labelled_rows,
        "recent_window": recent_window.model_dump() | {"file": RECENT_FILE} if recent_window else None,
        "trigger": trigger.model_dump() if trigger else None,
    }


def start_run(
    settings: Settings,
    *,
    execution_name: str,
    dataset: str | None,
    poll_seconds: int,
    fault_injection: FaultInjection | None = None,
    recent_window: RecentWindow | None = None,
    trigger: RetrainingTrigger | None = None,
    s3: S3Client,
    sagemaker: SageMakerClient,
    artifacts_bucket: str,
) -> dict[str, Any]:
    """Validate, find the champion, copy the recent window, write the run document; returns what later
    states need."""
    if dataset not in (None, settings.problem.dataset.name):
        raise InvalidRunError(
            f"dataset {dataset!r} is not the configured problem's {settings.problem.dataset.name!r}"
        )
    problems = settings_problems(settings)
    if problems:
        raise InvalidRunError("model_tests settings: " + "; ".join(problems))
    champion = registry.champion_summary(sagemaker, settings.model_package_group)
    prefix = f"{RUNS_PREFIX}{execution_name}/"
    if recent_window is not None:
        copy_recent_window(s3, recent_window, artifacts_bucket, f"{prefix}{RECENT_FILE}")
    document = run_document(settings, execution_name, champion, recent_window=recent_window, trigger=trigger)
    s3.put_object(
        Bucket=artifacts_bucket, Key=f"{prefix}run.json", Body=json.dumps(document, indent=2).encode()
    )
    return {
        "dataset": settings.problem.dataset.name,
        "poll_seconds": poll_seconds,
        "run_prefix": f"s3://{artifacts_bucket}/{prefix}",
        "champion_version": champion["version"] if champion else None,
        # Handed to the register step as is (null when none was asked for).
        "fault_injection": fault_injection.model_dump() if fault_injection else None,
        "recent_window_rows": recent_window.rows if recent_window else None,
    }


def copy_recent_window(s3: S3Client, window: RecentWindow, bucket: str, key: str) -> None:
    """Copy the recent window's object under the run prefix; a missing object fails the run."""
    try:
        source_bucket, source_key = split_s3_uri(window.uri)
    except ValueError as error:
        raise InvalidRunError(f"recent_window.uri {window.uri!r} is not an S3 URI: {error}") from None
    try:
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": source_key})
    except s3.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code not in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
            raise
        raise InvalidRunError(
            f"the recent labelled window {window.uri} does not exist ({code}): the run cannot judge the "
            "challenger on it; start the run again without recent_window, or with a window that exists"
        ) from None


class Failure(BaseModel):
    """What the state machine's Catch hands to the failure report."""

    execution_name: str
    execution_arn: str = ""
    error: str = "States.Unknown"
    cause: str = ""
    state: dict[str, Any] = {}


def write_failure_report(s3: S3Client, bucket: str, failure: Failure) -> str:
    """Write the report of one failed run; returns its URI. A JSON cause (Lambda errors) is parsed."""
    try:
        cause: Any = json.loads(failure.cause)
    except ValueError:
        cause = failure.cause
    report = {
        "execution_name": failure.execution_name,
        "execution_arn": failure.execution_arn,
        "error": failure.error,
        "cause": cause,
        "reported_at": datetime.now(UTC).isoformat(),
        "state": failure.state,
    }
    key = f"{FAILURES_PREFIX}{failure.execution_name}/report.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(report, indent=2, default=str).encode())
    return f"s3://{bucket}/{key}"
