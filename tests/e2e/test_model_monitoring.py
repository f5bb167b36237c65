"""Model monitoring end to end on the embedded AWS: the monitor schedule fires on the embedded AWS's ticker
(sped up: an hourly window every few seconds), reads the endpoint's capture, and judges it.

Undrifted traffic with its labels raises nothing. Drifted traffic (the example generator's drift, which
also flips the effect of tenure on churn) with its labels makes the scheduled monitors emit
`DriftDetected` and `ModelQualityDegraded` after the debounce; each window leaves an HTML report in S3,
which `mlcycle monitor report` fetches.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlcycle.application import cycle
from mlcycle.application.connect import STATE_FILE
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.local.sagemaker import endpoints
from mlcycle.local.session import LocalPlatform, local_platform
from mlcycle.monitoring import labels, windows
from tests.e2e.helpers import curate, run_mlcycle, run_training

pytestmark = pytest.mark.e2e

#: Virtual seconds per real second: the hourly monitor schedule fires about every 6 s.
TIME_SCALE = 600


@pytest.fixture(scope="module")
def monitored(settings: Settings, assembly: Path) -> Iterator[LocalPlatform]:
    """A platform with a trained, deployed model; then its clock sped up for the monitor schedule."""
    with local_platform(settings, assembly) as local:
        curate(local, settings, churn.generate(3000, seed=11), "monitoring")
        run = run_training(local)
        assert run.status == "SUCCEEDED", (run.error, run.cause)
        cycle.wait_for_endpoint(local.clients, settings, lambda _m: None)
        local.aws.ctx.time_scale = TIME_SCALE
        yield local


@pytest.fixture(scope="module")
def findings(monitored: LocalPlatform, settings: Settings) -> Callable[[], list[str]]:
    """The monitor events put on our bus so far (a queue behind a rule, drained on each call)."""
    endpoint = monitored.aws.endpoint_url
    import boto3

    session = boto3.session.Session(
        region_name=settings.region, aws_access_key_id="x", aws_secret_access_key="x"
    )
    sqs, events = (
        session.client("sqs", endpoint_url=endpoint),
        session.client("events", endpoint_url=endpoint),
    )
    url = sqs.create_queue(QueueName="monitor-findings")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = monitored.platform.event_bus
    events.put_rule(Name="findings", EventBusName=bus, EventPattern=json.dumps({"source": ["mlcycle"]}))
    events.put_targets(Rule="findings", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    seen: list[str] = []

    def drain() -> list[str]:
        while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                seen.append(json.loads(message["Body"])["detail-type"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [
            kind for kind in seen if kind.startswith(("Drift", "ModelQuality", "DataQuality", "Bias", "Kpi"))
        ]

    return drain


def _send(local: LocalPlatform, settings: Settings, rows: pd.DataFrame) -> None:
    """Each row as one request with its customer id as the inference id; their labels stored first.

    The clock stands still while they go out, and their capture is flushed before it runs again: the next
    window gets the whole burst (on a slow machine a burst would otherwise straddle windows too small for
    a verdict)."""
    local.aws.ctx.time_scale = 0
    try:
        _requests(local, settings, rows)
        endpoints.flush_capture()
    finally:
        local.aws.ctx.time_scale = TIME_SCALE


def _requests(local: LocalPlatform, settings: Settings, rows: pd.DataFrame) -> None:
    truth = pd.DataFrame({"inference_id": rows["customer_id"], "label": rows["churned"].astype(int)})
    truth["labelled_at"] = pd.Timestamp.now(tz="UTC")
    labels.store(local.clients.s3, local.platform.monitoring_bucket, truth, source="e2e")
    runtime = local.clients.runtime
    features = list(settings.problem.features)
    for _, row in rows.iterrows():
        body = row[features].to_frame().T.to_csv(header=False, index=False)
        runtime.invoke_endpoint(
            EndpointName=settings.endpoint_name,
            ContentType="text/csv",
            Body=body,
            InferenceId=row["customer_id"],
        )


def _judged(local: LocalPlatform, settings: Settings, rows: int, timeout: float = 90) -> list[dict[str, Any]]:
    """Wait until the monitors have judged ``rows`` captured rows in all; the windows, newest first."""
    state = windows.MonitorState(local.platform.monitor_table, local.clients.dynamodb)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        judged = state.windows(settings.endpoint_name, limit=100)
        if sum(int(w["rows"]) for w in judged) >= rows:
            return judged
        time.sleep(1)
    raise AssertionError(f"the monitors did not judge {rows} rows within {timeout}s")


def test_undrifted_traffic_raises_nothing(
    monitored: LocalPlatform, settings: Settings, findings: Callable[[], list[str]]
) -> None:
    # WHEN undrifted traffic with its labels goes through the endpoint, THEN the scheduled windows judge it
    _send(monitored, settings, churn.generate(450, seed=31))
    judged = _judged(monitored, settings, 450)
    assert any(w["findings"].get("drift") is False for w in judged), judged
    # AND nothing was found
    assert findings() == []


def test_drifted_traffic_raises_drift_and_model_quality(
    monitored: LocalPlatform, settings: Settings, findings: Callable[[], list[str]], tmp_path: Path
) -> None:
    # WHEN strongly drifted traffic arrives over two windows, with its labels
    _send(monitored, settings, churn.generate(450, seed=32, drift=1.0))
    _judged(monitored, settings, 900)
    _send(monitored, settings, churn.generate(450, seed=33, drift=1.0))
    judged = _judged(monitored, settings, 1350)
    # THEN the monitors announce drift and degraded model quality
    deadline = time.monotonic() + 30
    while not {"DriftDetected", "ModelQualityDegraded"} <= set(found := findings()):
        assert time.monotonic() < deadline, (found, [w["findings"] for w in judged])
        time.sleep(1)
    # AND `mlcycle monitor report` fetches the latest window's HTML report from S3
    (tmp_path / STATE_FILE).parent.mkdir()
    state = {
        "pid": os.getpid(),
        "endpoint_url": monitored.aws.endpoint_url,
        "platform": asdict(monitored.platform),
    }
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    fetched = run_mlcycle(tmp_path, "monitor", "report", "--out", "report.html")
    assert fetched.returncode == 0, fetched.stderr
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    status = run_mlcycle(tmp_path, "monitor", "status")
    assert "drift" in status.stdout and "open" in status.stdout, status.stdout
