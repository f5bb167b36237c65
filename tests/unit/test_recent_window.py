"""The recent labelled window against moto in-process: capture committed by the monitor's own windows,
labels stored as uploads store them, and the frame (and its Parquet export) the challenger is judged on."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.monitoring import labels, monitor, recent
from tests.utils import REGION, capture_record, make_bucket, make_key_table, serve_package

BUCKET, TABLE, BUS, ARTIFACTS = "monitor-data", "monitor-state", "mlcycle-bus", "artifacts"


def _probability(frame: pd.DataFrame) -> np.ndarray:
    """A stand-in champion: a churn score rising with the charges and the support calls."""
    raw = frame["monthly_charges"].to_numpy(float) / 150 + frame["support_calls"].to_numpy(float) / 10
    return np.clip(raw, 0.01, 0.99).round(4)


@dataclass
class World:
    settings: Settings
    platform: monitor.Platform


@pytest.fixture
def world(settings: Settings, moto_aws: None) -> Iterator[World]:
    session = boto3.session.Session(region_name=REGION)
    s3, sagemaker = session.client("s3"), session.client("sagemaker")
    make_bucket(s3, BUCKET)
    make_bucket(s3, ARTIFACTS)
    make_key_table(session.client("dynamodb"), TABLE)
    session.client("events").create_event_bus(Name=BUS)
    _serving_model(s3, sagemaker, settings)
    platform = monitor.Platform(
        s3, sagemaker, session.client("dynamodb"), session.client("events"), BUS, BUCKET, TABLE
    )
    two = settings.model_copy(
        update={"retraining": settings.retraining.model_copy(update={"recent_windows": 2})}
    )
    yield World(two, platform)


def _serving_model(s3: Any, sagemaker: Any, settings: Settings) -> None:
    """Version 1 registered with its drift reference, behind the endpoint (as deploy_model leaves it)."""
    reference = churn.generate(1000, seed=1)[list(settings.problem.features)]
    reference["prediction"] = (_probability(reference) >= 0.5).astype(int)
    buffer = io.BytesIO()
    reference.to_parquet(buffer, index=False)
    s3.put_object(Bucket=BUCKET, Key="evaluation/reference.parquet", Body=buffer.getvalue())
    sagemaker.create_model_package_group(ModelPackageGroupName=settings.model_package_group)
    uri = f"s3://{BUCKET}/evaluation/baseline.json"
    container = {"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}
    package = sagemaker.create_model_package(
        ModelPackageGroupName=settings.model_package_group,
        InferenceSpecification={
            "Containers": [container],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        DriftCheckBaselines={
            "ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": uri}}
        },
        ModelApprovalStatus="Approved",
        CustomerMetadataProperties={"metric:roc_auc": "0.85"},
    )["ModelPackageArn"]
    serve_package(sagemaker, settings.endpoint_name, package, container)


def _capture(world: World, rows: pd.DataFrame, name: str) -> None:
    """One-row CSV requests with the customer's id as the inference id, in SageMaker's JSONL layout."""
    features = list(world.settings.problem.features)
    probability = _probability(rows)
    lines = []
    for i in range(len(rows)):
        p = float(probability[i])
        answer = {"predictions": [int(p >= 0.5)], "probabilities": [[round(1 - p, 4), p]]}
        body = rows.iloc[[i]][features].to_csv(header=False, index=False)
        customer = str(rows["customer_id"].iloc[i])
        lines.append(capture_record(body, json.dumps(answer), inference_id=customer, event_id=f"e{i}"))
    key = f"capture/{world.settings.endpoint_name}/AllTraffic/{datetime.now(UTC):%Y/%m/%d/%H}/{name}.jsonl"
    world.platform.s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())


def _label(world: World, rows: pd.DataFrame, source: str) -> None:
    truth = pd.DataFrame({"inference_id": rows["customer_id"], "label": rows["churned"].astype(int)})
    truth["labelled_at"] = pd.Timestamp.now(tz="UTC")
    labels.store(world.platform.s3, BUCKET, truth, source=source)


def _window(world: World, rows: pd.DataFrame, hour: int) -> str:
    window_id = f"2026-11-28T{hour:02d}:00:00Z"
    _capture(world, rows, f"w{hour}")
    monitor.run_window(world.settings, world.platform, window_id)
    return window_id


def _labelled(world: World) -> pd.DataFrame:
    return recent.labelled_window(
        world.settings,
        s3=world.platform.s3,
        dynamodb=world.platform.dynamodb,
        monitor_table=TABLE,
        monitoring_bucket=BUCKET,
    )


def _export(world: World, key: str = "recent/run-1.parquet") -> Any:
    return recent.export_recent_window(
        world.settings,
        s3=world.platform.s3,
        dynamodb=world.platform.dynamodb,
        monitor_table=TABLE,
        monitoring_bucket=BUCKET,
        artifacts_bucket=ARTIFACTS,
        key=key,
    )


def test_the_newest_windows_labelled_rows_with_the_champions_captured_scores(world: World) -> None:
    # GIVEN three committed windows; the oldest fully labelled, the middle one half, the newest fully
    old, middle, new = (churn.generate(120, seed=s) for s in (31, 32, 33))
    _window(world, old, 1)
    middle_id, new_id = _window(world, middle, 2), _window(world, new, 3)
    _label(world, old, "old")
    _label(world, middle.iloc[:60], "middle")
    _label(world, new, "new")
    # WHEN the recent labelled window is read (recent_windows = 2)
    frame = _labelled(world)
    # THEN it holds the labelled rows of the two newest windows only, oldest window first
    features = list(world.settings.problem.features)
    assert list(frame.columns) == [*features, *recent.COLUMNS]
    expected = pd.concat([middle.iloc[:60], new], ignore_index=True)
    assert frame["inference_id"].tolist() == expected["customer_id"].tolist()
    assert frame["window_id"].tolist() == [middle_id] * 60 + [new_id] * 120
    # AND the labels are the stored ones, the score and prediction the champion's captured answers
    assert (
        frame["label"].dtype == "int64"
        and frame["label"].tolist() == expected["churned"].astype(int).tolist()
    )
    np.testing.assert_allclose(frame["score"], _probability(expected))
    assert frame["prediction"].tolist() == (_probability(expected) >= 0.5).astype(float).tolist()
    assert set(frame["model_version"]) == {1}
    # AND the features are lined up with the model's schema: numbers as floats, categories as text
    np.testing.assert_allclose(frame["monthly_charges"], expected["monthly_charges"])
    assert (
        frame["tenure_months"].dtype == "float64"
        and frame["contract"].tolist() == expected["contract"].tolist()
    )


def test_windows_without_traffic_are_skipped_not_counted(world: World) -> None:
    # GIVEN two windows with labelled traffic, then two quiet ones (recent_windows = 2)
    first, second = (churn.generate(50, seed=s) for s in (41, 42))
    first_id, second_id = _window(world, first, 1), _window(world, second, 2)
    _label(world, first, "first")
    _label(world, second, "second")
    for hour in (3, 4):
        monitor.run_window(world.settings, world.platform, f"2026-11-28T{hour:02d}:00:00Z")
    # THEN the recent window is the two windows that saw traffic
    frame = _labelled(world)
    assert frame["window_id"].tolist() == [first_id] * 50 + [second_id] * 50


def test_windows_of_an_earlier_model_version_are_left_out() -> None:
    newest_first = [
        {"window_id": "c", "model_version": 2, "capture_keys": ["k3"]},
        {"window_id": "b", "model_version": 2, "capture_keys": []},
        {"window_id": "x", "model_version": None, "capture_keys": ["k2"]},
        {"window_id": "a", "model_version": 1, "capture_keys": ["k1"]},
    ]
    assert [w["window_id"] for w in recent.served_by_newest(newest_first)] == ["c"]
    assert recent.served_by_newest([]) == []


def test_export_writes_parquet_and_nothing_without_labels(world: World) -> None:
    # GIVEN a committed window without labels: nothing to judge on, nothing written
    rows = churn.generate(150, seed=34)
    window_id = _window(world, rows, 4)
    empty = _labelled(world)
    assert empty.empty and list(empty.columns) == [*world.settings.problem.features, *recent.COLUMNS]
    assert _export(world) is None
    assert "Contents" not in world.platform.s3.list_objects_v2(Bucket=ARTIFACTS)
    # WHEN its labels arrive, THEN the export writes the frame as Parquet and says what it holds
    _label(world, rows.iloc[:100], "late")
    written = _export(world)
    assert written is not None
    assert (written.uri, written.rows, written.windows, written.model_version) == (
        f"s3://{ARTIFACTS}/recent/run-1.parquet",
        100,
        1,
        1,
    )
    body = world.platform.s3.get_object(Bucket=ARTIFACTS, Key="recent/run-1.parquet")["Body"].read()
    stored = pd.read_parquet(io.BytesIO(body))
    pd.testing.assert_frame_equal(stored, _labelled(world), check_dtype=False)
    assert set(stored["window_id"]) == {window_id}
