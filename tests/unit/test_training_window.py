"""retraining.training_window_days: a training set of the rows within that many days of the newest."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import pytest

from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.training_sets import InsufficientDataError, build_training_set, within_window
from tests.utils import make_bucket


def _parquet(s3: Any, bucket: str, key: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def test_only_rows_within_the_window_of_the_newest_event_time_are_split(s3: Any, settings: Settings) -> None:
    # GIVEN a month of curated rows
    make_bucket(s3, "curated")
    make_bucket(s3, "artifacts")
    frame = churn.generate(1200, seed=8)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    s3.put_object(
        Bucket="curated", Key="curated/churn/ingest_date=2026-02-01/u1.parquet", Body=buffer.getvalue()
    )
    # WHEN a training set is built with a 7-day window
    built = build_training_set(
        settings.problem,
        s3=s3,
        curated_bucket="curated",
        artifacts_bucket="artifacts",
        training_set_id="run-w",
        min_rows=50,
        window_days=7,
    )
    # THEN train and test hold exactly the rows of the last 7 days before the newest event time
    newest = frame["event_time"].max()
    recent = frame[frame["event_time"] >= newest - pd.Timedelta(days=7)]
    assert 0 < len(recent) < len(frame)
    train = _parquet(s3, "artifacts", "training-sets/run-w/train/data.parquet")
    test = _parquet(s3, "artifacts", "training-sets/run-w/test/data.parquet")
    assert set(train["customer_id"]) | set(test["customer_id"]) == set(recent["customer_id"])
    assert built.train_rows + built.test_rows == len(recent)
    # AND the manifest records the window
    manifest = json.loads(
        s3.get_object(Bucket="artifacts", Key="training-sets/run-w/manifest.json")["Body"].read()
    )
    assert manifest["training_window"] == built.training_window
    assert built.training_window is not None
    assert built.training_window["days"] == 7 and built.training_window["rows_kept"] == len(recent)
    assert built.training_window["rows_before"] == len(frame)
    assert pd.Timestamp(built.training_window["end"]) == newest


def test_without_a_window_every_row_is_kept_and_a_window_needs_an_event_time(settings: Settings) -> None:
    frame = churn.generate(100, seed=9)
    kept, window = within_window(frame, settings.problem, 1000)
    assert len(kept) == len(frame) and window["rows_kept"] == 100
    timeless = settings.problem.model_copy(
        update={"dataset": settings.problem.dataset.model_copy(update={"event_time": None})}
    )
    with pytest.raises(InsufficientDataError, match="needs an event time"):
        within_window(frame, timeless, 7)
