"""One monitor window of an endpoint, from the capture that arrived to the events it raises.

:func:`run_window` reads the capture objects that arrived since the checkpoint (mlcycle.monitoring.windows),
decodes them against the serving model's schema, compares them with the model's drift reference (the
sample registered with it: features, prediction, probability, label), checks their data quality, writes
the window's reports to S3 (``report.json``, a self-contained ``report.html``, and Model Monitor's
``statistics.json``, ``constraints.json`` and ``constraint_violations.json``), commits the window with
the checkpoint and the debounce in one transaction, then puts the events whose debounce changed:
``DriftDetected``/``DriftRecovered``, ``DataQualityViolated``/``DataQualityRecovered``. An event carries
what an alert needs: endpoint, model version, the worst features with their scores and thresholds, and
the report's URI. A window with fewer rows than ``monitoring.min_rows`` answers ``insufficient_data``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from mlcycle import deployment, events, modeling
from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings
from mlcycle.monitoring import (
    capture,
    data_quality,
    drift,
    formats,
    labels,
    late_labels,
    outcome_checks,
    report_html,
    windows,
)
from mlcycle.names import EventType

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

    from mlcycle.monitoring.profile import ColumnKind

REFERENCE_FILE = "reference.parquet"
#: (finding kind, event when it opens, event when it recovers)
FINDINGS = (
    ("drift", EventType.DRIFT_DETECTED, EventType.DRIFT_RECOVERED),
    ("data_quality", EventType.DATA_QUALITY_VIOLATED, EventType.DATA_QUALITY_RECOVERED),
    ("model_quality", EventType.MODEL_QUALITY_DEGRADED, EventType.MODEL_QUALITY_RECOVERED),
    ("bias", EventType.BIAS_DETECTED, EventType.BIAS_RECOVERED),
    ("kpi", EventType.KPI_BREACHED, EventType.KPI_RECOVERED),
)


@dataclass
class Platform:
    """What a monitor run talks to."""

    s3: S3Client
    sagemaker: SageMakerClient
    dynamodb: DynamoDBClient
    events: EventBridgeClient
    event_bus: str
    monitoring_bucket: str
    state_table: str


@dataclass
class WindowResult:
    endpoint: str
    window_id: str
    status: str  # "ok" | "insufficient_data" | "no_model"
    rows: int
    model_version: int | None
    report_uri: str | None
    findings: dict[str, bool | None] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    capture_objects: int = 0
    failed_invocations: int = 0
    undecodable_records: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    #: Per finding: the features that crossed their thresholds (what an alert shows first).
    worst: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    replayed: bool = False  # a re-run of a window committed before: nothing was counted again
    #: The capture objects this window consumed (keys in the monitoring bucket): late labels re-read them.
    capture_keys: list[str] = field(default_factory=list)
    #: Label findings' verdicts of the windows before this one, re-judged with the labels known now.
    previous: list[dict[str, Any]] = field(default_factory=list)


_references: dict[str, pd.DataFrame] = {}  # by S3 URI: one read per cold start


def run_window(settings: Settings, platform: Platform, window_id: str) -> WindowResult:
    state = windows.MonitorState(platform.state_table, platform.dynamodb)
    endpoint = settings.endpoint_name
    stored = state.window(endpoint, window_id)
    if stored is not None:
        return _replay(platform, state, stored)
    checkpoint = state.checkpoint(endpoint)
    prefix = f"capture/{endpoint}/{deployment.VARIANT}/"
    arrived = windows.arrived_since(platform.s3, platform.monitoring_bucket, prefix, checkpoint)
    result = _evaluate(settings, platform, window_id, arrived, state)
    findings = [state.finding(endpoint, kind) for kind, _, _ in FINDINGS]
    result.events = _debounced(settings, result, findings)
    record = _record(result)
    record.pop("previous", None)
    advanced = windows.advance(checkpoint, arrived)
    if not state.commit(
        endpoint, window_id, record, checkpoint=checkpoint, advanced=advanced, findings=findings
    ):
        raise WindowConflictError(
            f"another run committed a window of {endpoint} first; this one counted nothing"
        )
    _publish(platform, result.events)
    state.mark_published(endpoint, window_id, record)
    return result


class WindowConflictError(RuntimeError):
    """Two runs raced for the same capture; the loser wrote nothing (the winner counted it)."""


def _replay(platform: Platform, state: windows.MonitorState, stored: dict[str, Any]) -> WindowResult:
    """A committed window again: its events are put again only if they were never confirmed put."""
    stored = {k: v for k, v in stored.items() if not k.startswith("_")}
    published = stored.pop("published", False)
    stored.pop("rejudged", None)
    result = WindowResult(**stored)
    result.replayed = True
    if not published:
        _publish(platform, result.events)
        state.mark_published(result.endpoint, result.window_id, _record(result))
    return result


def _record(result: WindowResult) -> dict[str, Any]:
    record = {k: v for k, v in result.__dict__.items() if k not in ("replayed", "previous")}
    plain: dict[str, Any] = json.loads(json.dumps(record, default=str))
    return plain


def _evaluate(
    settings: Settings,
    platform: Platform,
    window_id: str,
    arrived: list[windows.CaptureObject],
    state: windows.MonitorState,
) -> WindowResult:
    endpoint = settings.endpoint_name
    lines = [line for obj in arrived for line in _read_lines(platform.s3, obj)]
    features = list(settings.problem.features)
    window = capture.decode(lines, features)
    result = WindowResult(endpoint, window_id, "ok", window.rows, None, None)
    result.capture_objects, result.failed_invocations = len(arrived), window.failed
    result.capture_keys = [obj.key for obj in arrived]
    result.undecodable_records = window.undecodable
    serving = _serving_package(settings, platform.sagemaker)
    if serving is None:
        result.status = "no_model"
        return result
    package, version = serving
    result.model_version = version
    reference = _reference(platform.s3, package)
    problem = settings.problem.model_dump(mode="json")
    schema = cast("dict[str, ColumnKind]", modeling.feature_schema(problem))
    options = drift.DriftOptions(
        drift_share=settings.monitoring.drift_share,
        min_rows=settings.monitoring.min_rows,
        prediction="prediction",
    )
    columns = [*features, "prediction"]
    report = drift.compare(reference[columns], window.frame[columns], schema, options)
    quality = data_quality.check(
        window.frame, report, settings.problem.dataset, features, settings.monitoring
    )
    enough = window.rows >= settings.monitoring.min_rows
    result.status = "ok" if enough else "insufficient_data"
    window.frame["model_version"] = version
    known_labels = labels.load(platform.s3, platform.monitoring_bucket)  # once: every window below uses it
    checks = outcome_checks.judge(settings, window.frame, known_labels, package=package, reference=reference)
    result.findings = {
        "drift": report.dataset.drifted if enough else None,
        "data_quality": quality.violated,
        **checks.findings,
    }
    result.report_uri = _write_reports(
        platform, settings, window_id, report=report, quality=quality, checks=checks, result=result
    )
    result.metrics = _metrics(report, quality, window) | _outcome_metrics(checks)
    result.worst = {"drift": _drifted(report), "data_quality": quality.worst(), **checks.worst()}
    result.previous = late_labels.rejudge(
        settings,
        platform.s3,
        platform.monitoring_bucket,
        state,
        known_labels,
        package=package,
        reference=reference,
    )
    return result


def _outcome_metrics(checks: outcome_checks.OutcomeChecks) -> dict[str, float]:
    quality = checks.quality
    metrics = {"label_coverage": float(quality.coverage)}
    metrics |= {f"quality:{k}": float(v) for k, v in quality.metrics.items() if v is not None}
    metrics |= {f"kpi:{k.name}": float(k.value) for k in checks.kpis if k.value is not None}
    return metrics


def _drifted(report: drift.DriftReport, limit: int = 5) -> list[dict[str, Any]]:
    """Drifted columns with their test, score and threshold (the prediction's first when it drifted)."""
    columns = [*([report.prediction] if report.prediction else []), *report.columns]
    return [
        {"feature": c.column, "test": c.test, "score": c.score, "threshold": c.threshold, "reason": c.reason}
        for c in columns
        if c.drifted
    ][:limit]


def _serving_package(settings: Settings, sagemaker: SageMakerClient) -> tuple[dict[str, Any], int] | None:
    current = deployment.current_endpoint(sagemaker, settings.endpoint_name)
    if current is None:
        return None
    arn = deployment.package_of(
        sagemaker, deployment.production_config(sagemaker, current["EndpointConfigName"])
    )
    if not arn:
        return None
    described = sagemaker.describe_model_package(ModelPackageName=arn)
    return dict(described), int(arn.rsplit("/", 1)[1])


def reference_uri(package: dict[str, Any]) -> str:
    """The drift reference registered with a model: next to its baseline statistics."""
    baseline = package["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]["S3Uri"]
    return f"{baseline.rsplit('/', 1)[0]}/{REFERENCE_FILE}"


def _reference(s3: S3Client, package: dict[str, Any]) -> pd.DataFrame:
    uri = reference_uri(package)
    if uri not in _references:
        bucket, key = split_s3_uri(uri)
        _references[uri] = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    return _references[uri]


def _read_lines(s3: S3Client, obj: windows.CaptureObject) -> list[bytes]:
    return s3.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read().splitlines()


def _write_reports(
    platform: Platform,
    settings: Settings,
    window_id: str,
    *,
    report: drift.DriftReport,
    quality: data_quality.DataQualityResult,
    checks: outcome_checks.OutcomeChecks,
    result: WindowResult,
) -> str:
    safe = window_id.replace(":", "-")
    prefix = f"reports/{settings.endpoint_name}/{safe}/"
    summary = {
        "endpoint": result.endpoint,
        "window_id": window_id,
        "model_version": result.model_version,
        "status": result.status,
        "rows": result.rows,
        "failed_invocations": result.failed_invocations,
        "undecodable_records": result.undecodable_records,
        "findings": result.findings,
        "drift": report.to_dict(),
        "data_quality": quality.to_dict(),
        **checks.to_dict(),
        "written_at": datetime.now(UTC).isoformat(),
    }
    title = f"{settings.endpoint_name} · model v{result.model_version} · window {window_id}"
    files: dict[str, tuple[str, str]] = {
        "report.json": (json.dumps(summary, indent=2, default=str), "application/json"),
        "report.html": (report_html.render(report, title=title), "text/html"),
        "statistics.json": (json.dumps(formats.statistics(report, "current"), indent=2), "application/json"),
        "constraints.json": (json.dumps(formats.constraints(report), indent=2), "application/json"),
        "constraint_violations.json": (
            json.dumps(formats.violations(report, list(report_columns(report))), indent=2),
            "application/json",
        ),
    }
    for name, (body, content_type) in files.items():
        platform.s3.put_object(
            Bucket=platform.monitoring_bucket, Key=prefix + name, Body=body.encode(), ContentType=content_type
        )
    return f"s3://{platform.monitoring_bucket}/{prefix}report.json"


def report_columns(report: drift.DriftReport) -> list[str]:
    return [c.column for c in report.columns] + ([report.prediction.column] if report.prediction else [])


def _metrics(
    report: drift.DriftReport, quality: data_quality.DataQualityResult, window: capture.CaptureWindow
) -> dict[str, float]:
    metrics = {
        "rows": float(window.rows),
        "failed_invocations": float(window.failed),
        "drifted_feature_share": float(report.dataset.share or 0.0),
        "data_quality_violations": float(sum(1 for f in quality.features if f.violations)),
    }
    for column in report.columns:
        if column.score is not None:
            metrics[f"drift_score:{column.column}"] = float(column.score)
    return metrics


def _debounced(
    settings: Settings, result: WindowResult, findings: list[windows.Finding]
) -> list[dict[str, Any]]:
    out = []
    debounce = settings.monitoring.debounce
    for finding, (kind, opened, recovered) in zip(findings, FINDINGS, strict=True):
        verdict = result.findings.get(kind)
        if kind in late_labels.LABEL_FINDINGS and result.previous:
            # Labels may have arrived since the earlier windows ran: debounce on their verdicts as of now.
            change = finding.rejudge(late_labels.verdicts(result.previous, kind, verdict), debounce)
        else:
            change = finding.update(verdict, debounce)
        if change is None:
            continue
        detail = {
            "endpoint": result.endpoint,
            "model_version": result.model_version,
            "window_id": result.window_id,
            "finding": kind,
            "report_uri": result.report_uri,
            "worst": result.worst.get(kind, []),
        }
        out.append({"detail_type": str(opened if change == "opened" else recovered), "detail": detail})
    return out


def _publish(platform: Platform, pending: list[dict[str, Any]]) -> None:
    for event in pending:
        events.publish(platform.events, platform.event_bus, EventType(event["detail_type"]), event["detail"])
