"""Late labels: labels that arrive after a window ran re-judge that window's label checks.

Each window keeps the capture objects it consumed. Before a new window's findings are debounced, the
windows the debounce looks back on are judged again (model quality, bias, KPIs) with every label known
now; their records and ``report.json`` are updated, and the label findings are debounced on these fresh
verdicts, so a window whose labels came late counts as what it turned out to be.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings
from mlcycle.monitoring import capture, outcome_checks, windows

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LABEL_FINDINGS = ("model_quality", "bias", "kpi")


def rejudge(
    settings: Settings,
    s3: S3Client,
    bucket: str,
    state: windows.MonitorState,
    known_labels: pd.DataFrame,
    *,
    package: dict[str, Any],
    reference: pd.DataFrame,
) -> list[dict[str, Any]]:
    """The previous windows the debounce reads (oldest first), each re-judged with the labels known now
    (a window of another model version, or without capture, is kept as it was)."""
    endpoint, version = settings.endpoint_name, int(package["ModelPackageArn"].rsplit("/", 1)[1])
    previous = state.windows(endpoint, limit=max(settings.monitoring.debounce.windows - 1, 0))
    out = []
    for record in reversed(previous):
        current = (
            record.get("status") == "ok"
            and record.get("capture_keys")
            and record.get("model_version") == version
        )
        out.append(
            _rejudged(
                settings,
                s3,
                bucket,
                state,
                record,
                known_labels=known_labels,
                package=package,
                reference=reference,
            )
            if current
            else record
        )
    return out


def _rejudged(
    settings: Settings,
    s3: S3Client,
    bucket: str,
    state: windows.MonitorState,
    record: dict[str, Any],
    *,
    known_labels: pd.DataFrame,
    package: dict[str, Any],
    reference: pd.DataFrame,
) -> dict[str, Any]:
    lines = [line for key in record["capture_keys"] for line in _lines(s3, bucket, key)]
    window = capture.decode(lines, list(settings.problem.features))
    window.frame["model_version"] = record["model_version"]
    checks = outcome_checks.judge(settings, window.frame, known_labels, package=package, reference=reference)
    coverage = float(checks.quality.coverage)
    findings = record.get("findings", {})
    if all(findings.get(k) == v for k, v in checks.findings.items()) and (
        record.get("metrics", {}).get("label_coverage") == coverage
    ):
        return record
    updated = dict(record)
    updated["findings"] = {**findings, **checks.findings}
    updated["metrics"] = {**record.get("metrics", {}), "label_coverage": coverage}
    updated["worst"] = {**record.get("worst", {}), **checks.worst()}
    updated["rejudged"] = True
    state.put_window(settings.endpoint_name, record["window_id"], updated)
    if record.get("report_uri"):
        _update_report(s3, str(record["report_uri"]), checks)
    return updated


def _lines(s3: S3Client, bucket: str, key: str) -> list[bytes]:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()


def _update_report(s3: S3Client, uri: str, checks: outcome_checks.OutcomeChecks) -> None:
    report_bucket, key = split_s3_uri(uri)
    report = json.loads(s3.get_object(Bucket=report_bucket, Key=key)["Body"].read())
    report.update(checks.to_dict())
    report["findings"] = {**report.get("findings", {}), **checks.findings}
    report["rejudged_with_late_labels"] = True
    s3.put_object(Bucket=report_bucket, Key=key, Body=json.dumps(report, indent=2, default=str).encode())


def verdicts(previous: Sequence[dict[str, Any]], kind: str, current: bool | None) -> list[bool | None]:
    """A label finding's verdicts over the previous windows (oldest first) and this one."""
    return [record.get("findings", {}).get(kind) for record in previous] + [current]
