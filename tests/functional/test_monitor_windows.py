"""The monitor's windows against moto: capture read exactly once per window, drift and data quality judged
against the serving model's reference, reports in S3 in our and Model Monitor's formats, and events
only after the debounce, with their recoveries."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pandas as pd
import pytest

from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.monitoring import monitor
from tests.utils import REGION, capture_record, make_bucket, make_key_table, serve_package

BUCKET, TABLE, BUS = "monitor-data", "monitor-state", "mlcycle-bus"


def _predict(frame: pd.DataFrame) -> pd.Series:
    """A stand-in model: flags customers with many support calls or high charges."""
    return ((frame["support_calls"] >= 3) | (frame["monthly_charges"] > 95)).astype(int)


@dataclass
class World:
    settings: Settings
    platform: monitor.Platform
    queue: str
    sqs: Any


@pytest.fixture
def world(settings: Settings, moto_aws: None) -> Iterator[World]:
    session = boto3.session.Session(region_name=REGION)
    s3, sagemaker = session.client("s3"), session.client("sagemaker")
    sqs, events = session.client("sqs"), session.client("events")
    make_bucket(s3, BUCKET)
    make_key_table(session.client("dynamodb"), TABLE)
    events.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName="findings")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["mlcycle"]}))
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    _serving_model(s3, sagemaker, settings)
    platform = monitor.Platform(s3, sagemaker, session.client("dynamodb"), events, BUS, BUCKET, TABLE)
    yield World(settings, platform, queue, sqs)


def _serving_model(s3: Any, sagemaker: Any, settings: Settings) -> None:
    """Version 1 registered with its drift reference, behind the endpoint (as deploy_model leaves it)."""
    reference = churn.generate(3000, seed=1)[list(settings.problem.features)]
    reference["prediction"] = _predict(reference)
    buffer = io.BytesIO()
    reference.to_parquet(buffer, index=False)
    s3.put_object(Bucket=BUCKET, Key="evaluation/reference.parquet", Body=buffer.getvalue())
    sagemaker.create_model_package_group(ModelPackageGroupName=settings.model_package_group)
    baseline = {
        "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/evaluation/baseline.json"}
    }
    container = {"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}
    package = sagemaker.create_model_package(
        ModelPackageGroupName=settings.model_package_group,
        InferenceSpecification={
            "Containers": [container],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        DriftCheckBaselines={"ModelDataQuality": baseline},
        ModelApprovalStatus="Approved",
        CustomerMetadataProperties={"metric:roc_auc": "0.85", "metric:accuracy": "0.8"},
    )["ModelPackageArn"]
    serve_package(sagemaker, settings.endpoint_name, package, container)


def _capture(world: World, rows: pd.DataFrame, name: str, *, per_request: int = 10, failed: int = 0) -> None:
    """Rows sent through the endpoint as CSV requests, captured in SageMaker's JSONL layout (a one-row
    request carries the customer's id as its inference id)."""
    features = list(world.settings.problem.features)
    lines = []
    for start in range(0, len(rows), per_request):
        part = rows.iloc[start : start + per_request]
        answer = {"predictions": _predict(part).tolist(), "probabilities": [[0.4, 0.6]] * len(part)}
        inference_id = str(part["customer_id"].iloc[0]) if per_request == 1 else None
        body = part[features].to_csv(header=False, index=False)
        lines.append(capture_record(body, json.dumps(answer), 200, inference_id))
    lines += [capture_record("1,2,3", '{"message": "boom"}', 500) for _ in range(failed)]
    key = f"capture/{world.settings.endpoint_name}/AllTraffic/{datetime.now(UTC):%Y/%m/%d/%H}/{name}.jsonl"
    world.platform.s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())


def _events(world: World) -> list[tuple[str, dict[str, Any]]]:
    got = world.sqs.receive_message(QueueUrl=world.queue, MaxNumberOfMessages=10).get("Messages", [])
    for message in got:
        world.sqs.delete_message(QueueUrl=world.queue, ReceiptHandle=message["ReceiptHandle"])
    return [(json.loads(m["Body"])["detail-type"], json.loads(m["Body"])["detail"]) for m in got]


def test_undrifted_traffic_raises_nothing_and_each_capture_counts_once(world: World) -> None:
    # GIVEN undrifted traffic, with a few failed invocations
    _capture(world, churn.generate(600, seed=7), "a", failed=3)
    # WHEN two windows run, THEN the first reads it all and finds nothing; the second has nothing new
    first = monitor.run_window(world.settings, world.platform, "2026-11-28T10:00:00Z")
    assert (first.status, first.rows, first.failed_invocations) == ("ok", 600, 3)
    assert first.model_version == 1
    assert first.findings == {
        "drift": False,
        "data_quality": False,
        "model_quality": None,  # no labels yet: no verdict
        "bias": None,
        "kpi": None,
    }
    second = monitor.run_window(world.settings, world.platform, "2026-11-28T11:00:00Z")
    assert (second.status, second.rows, second.capture_objects) == ("insufficient_data", 0, 0)
    assert set(second.findings.values()) == {None}
    # AND a re-run of the first window counts nothing again
    again = monitor.run_window(world.settings, world.platform, "2026-11-28T10:00:00Z")
    assert again.replayed and again.rows == 600
    assert _events(world) == []


def test_drift_is_announced_after_the_debounce_and_recovers(world: World) -> None:
    windows = iter(f"2026-11-28T{h:02d}:00:00Z" for h in range(24))

    def window(frame: pd.DataFrame) -> monitor.WindowResult:
        name = next(windows)
        _capture(world, frame, name.replace(":", "-"))
        return monitor.run_window(world.settings, world.platform, name)

    # GIVEN drifted traffic: one window is not yet an incident (2 of the last 3 windows must breach)
    assert window(churn.generate(600, seed=2, drift=0.8)).findings["drift"] is True
    assert _events(world) == []
    # WHEN a second drifted window follows, THEN DriftDetected names the model, the worst features, the report
    second = window(churn.generate(600, seed=3, drift=0.8))
    [(_, detail)] = [e for e in _events(world) if e[0] == "DriftDetected"]
    assert detail["model_version"] == 1 and detail["report_uri"] == second.report_uri
    assert detail["worst"] and {"feature", "test", "score", "threshold"} <= set(detail["worst"][0])
    # AND the reports are in S3: our JSON and HTML, and Model Monitor's files
    assert second.report_uri is not None
    prefix = second.report_uri.removeprefix(f"s3://{BUCKET}/").rsplit("/", 1)[0]
    keys = {
        o["Key"].rsplit("/", 1)[1]
        for o in world.platform.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    }
    assert keys == {
        "report.json",
        "report.html",
        "statistics.json",
        "constraints.json",
        "constraint_violations.json",
    }
    violations = json.loads(
        world.platform.s3.get_object(Bucket=BUCKET, Key=f"{prefix}/constraint_violations.json")["Body"].read()
    )
    assert violations["violations"]  # a record per broken check, in Model Monitor's shape
    # WHEN traffic is back to normal for two windows, THEN DriftRecovered
    window(churn.generate(600, seed=4))
    window(churn.generate(600, seed=5))
    assert [k for k, _ in _events(world)] == ["DriftRecovered"]


def test_a_surge_of_missing_values_violates_data_quality(world: World) -> None:
    rows = churn.generate(600, seed=9)
    rows.loc[rows.index[:300], "monthly_charges"] = None
    _capture(world, rows, "missing")
    result = monitor.run_window(world.settings, world.platform, "2026-11-28T12:00:00Z")
    assert result.findings["data_quality"] is True
    [worst] = [w for w in result.worst["data_quality"] if w["feature"] == "monthly_charges"]
    assert "missing rate" in worst["violations"][0]


def test_labels_arriving_judge_model_quality_against_the_registered_metrics(world: World) -> None:
    from mlcycle.monitoring import labels

    # GIVEN one-row requests with inference ids, and their true labels uploaded
    windows = iter(f"2026-11-28T{h:02d}:30:00Z" for h in range(24))
    for _ in range(2):
        rows = churn.generate(300, seed=20 + len(world.settings.problem.features))
        name = next(windows)
        _capture(world, rows, name.replace(":", "-"), per_request=1)
        truth = pd.DataFrame({"inference_id": rows["customer_id"], "label": rows["churned"].astype(int)})
        truth["labelled_at"] = pd.Timestamp.now(tz="UTC")
        labels.store(world.platform.s3, BUCKET, truth, source="test")
        # WHEN the window runs
        result = monitor.run_window(world.settings, world.platform, name)
        # THEN its model quality is judged: a constant score has an AUC of 0.5, far below the registered 0.85
        assert result.metrics["label_coverage"] == 1.0
        assert result.findings["model_quality"] is True
    # AND after two such windows ModelQualityDegraded names the metric and its drop
    degraded = [d for k, d in _events(world) if k == "ModelQualityDegraded"]
    assert len(degraded) == 1 and degraded[0]["worst"][0]["metric"] == "roc_auc"


def test_late_labels_re_judge_the_windows_they_belong_to(world: World) -> None:
    from mlcycle.monitoring import labels, windows

    def truth(rows: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame({"inference_id": rows["customer_id"], "label": rows["churned"].astype(int)})
        frame["labelled_at"] = pd.Timestamp.now(tz="UTC")
        return frame

    # GIVEN a window judged before any of its labels arrived: no model quality verdict
    early = churn.generate(300, seed=40)
    _capture(world, early, "early", per_request=1)
    first = monitor.run_window(world.settings, world.platform, "2026-11-28T20:00:00Z")
    assert first.findings["model_quality"] is None
    # WHEN its labels arrive late, with the next window's traffic and labels
    labels.store(world.platform.s3, BUCKET, truth(early), source="late")
    later = churn.generate(300, seed=41)
    _capture(world, later, "later", per_request=1)
    labels.store(world.platform.s3, BUCKET, truth(later), source="on-time")
    monitor.run_window(world.settings, world.platform, "2026-11-28T21:00:00Z")
    # THEN the early window is judged again with them, in the state table and in its report
    state = windows.MonitorState(TABLE, world.platform.dynamodb)
    [early_record] = [
        w for w in state.windows(world.settings.endpoint_name) if w["window_id"] == first.window_id
    ]
    assert early_record["findings"]["model_quality"] is True and early_record["rejudged"]
    assert early_record["metrics"]["label_coverage"] == 1.0
    assert first.report_uri is not None
    key = first.report_uri.removeprefix(f"s3://{BUCKET}/")
    report = json.loads(world.platform.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert report["findings"]["model_quality"] is True and report["rejudged_with_late_labels"]
    # AND it counts in the debounce: two degraded windows raise ModelQualityDegraded now
    assert [k for k, _ in _events(world) if k == "ModelQualityDegraded"] == ["ModelQualityDegraded"]
