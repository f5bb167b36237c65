"""The feature store on moto (S3, Glue, DynamoDB, Athena in-process): ingest, historical, online."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from mlcycle.example import churn
from mlcycle.features import AthenaEngine, FeatureStore, ingest_curated, ingest_rows
from tests.functional.helpers import DATABASE

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _history() -> pd.DataFrame:
    """Three customers, each seen on day 0 and again on day 10 with other values."""
    first = churn.generate(3, seed=1)
    later = first.copy()
    first["event_time"] = T0
    later["event_time"] = T0 + timedelta(days=10)
    later["support_calls"] = later["support_calls"] + 7
    later["tenure_months"] = later["tenure_months"] + 10
    return pd.concat([first, later], ignore_index=True)


def test_ingest_writes_partitions_glue_and_online_values(
    store: FeatureStore, clients: dict[str, Any]
) -> None:
    # GIVEN curated rows of two event dates in the curated bucket
    frame = _history()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    key = "curated/churn/ingest_date=2026-01-20/abc123.parquet"
    clients["s3"].put_object(Bucket="curated", Key=key, Body=buffer.getvalue())
    # WHEN that upload is ingested, twice (a redelivered event)
    for _ in range(2):
        result = ingest_curated(store, "churn", f"s3://curated/{key}", s3=clients["s3"])
    # THEN each view has one object per event date, named after the upload, and Glue knows both dates
    for view in ("customer_profile", "customer_activity"):
        keys = [
            o["Key"] for o in clients["s3"].list_objects_v2(Bucket="features", Prefix=f"{view}/")["Contents"]
        ]
        assert sorted(keys) == [
            f"{view}/event_date=2026-01-01/abc123.parquet",
            f"{view}/event_date=2026-01-11/abc123.parquet",
        ]
        assert store.offline.partitions(view) == ["2026-01-01", "2026-01-11"]
    # AND the objects hold the declared schema; online, the re-sent batch is of the same instants, which a
    # later write may overwrite (with the same values): newest per entity only, 3 customers per view
    profile = "customer_profile/event_date=2026-01-01/abc123.parquet"
    table = pq.read_table(io.BytesIO(clients["s3"].get_object(Bucket="features", Key=profile)["Body"].read()))
    assert table.column_names == [
        "customer_id",
        "event_time",
        "tenure_months",
        "age",
        "contract",
        "region",
        "ingested_at",
    ]
    assert [(v.view, v.online_written, v.online_stale) for v in result.views] == [
        ("customer_profile", 3, 0),
        ("customer_activity", 3, 0),
    ]
    # AND the online store holds the day-10 values
    online = store.get_online_features(list(frame["customer_id"][:3]))
    assert list(online["support_calls"]) == list(frame["support_calls"][3:])


def test_historical_features_are_point_in_time(store: FeatureStore) -> None:
    # GIVEN both snapshots ingested
    frame = _history()
    ingest_rows(store, "churn", frame, batch_id="b1")
    ids = list(frame["customer_id"][:3])
    # WHEN entity rows ask before, between, after and long after the snapshots (activity TTL is 30 days)
    entity = pd.DataFrame(
        {
            "customer_id": [ids[0], ids[0], ids[1], ids[2], "nobody"],
            "event_timestamp": [
                T0 - timedelta(hours=1),
                T0 + timedelta(days=5),
                T0 + timedelta(days=10),
                T0 + timedelta(days=45),
                T0 + timedelta(days=5),
            ],
            "label": [1, 0, 1, 0, 1],
        }
    )
    got = store.get_historical_features(entity).to_pandas()
    # THEN each row has the value as of its time: none yet, day 0, day 10, profile only (activity expired)
    calls = frame["support_calls"]
    assert pd.isna(got["support_calls"][0])
    assert got["support_calls"][1] == calls[0] and got["support_calls"][2] == calls[4]
    assert pd.isna(got["support_calls"][3]) and got["tenure_months"][3] == frame["tenure_months"][5]
    # AND every entity row comes back in order with its own columns, unknown entities with nulls
    assert got["customer_id"].tolist() == entity["customer_id"].tolist()
    assert got["label"].tolist() == [1, 0, 1, 0, 1]
    assert got.iloc[4][["tenure_months", "monthly_charges"]].isna().all()


def test_historical_features_through_athena_use_the_api_shape(
    store: FeatureStore, clients: dict[str, Any]
) -> None:
    # GIVEN the Athena engine (moto accepts any SQL and answers with canned rows)
    clients["athena"].create_work_group(
        Name="wg", Configuration={"ResultConfiguration": {"OutputLocation": "s3://features/athena/"}}
    )
    engine = AthenaEngine(clients["athena"], workgroup="wg", database=DATABASE, sleep=lambda _s: None)
    entity = pd.DataFrame({"customer_id": ["c1"], "event_timestamp": [T0]})
    # WHEN the historical join runs there
    rows = store.get_historical_features_athena(entity, engine, s3=clients["s3"])
    # THEN the query ran and its temporary entity table is gone again
    assert isinstance(rows, list)
    executions = clients["athena"].list_query_executions(WorkGroup="wg")["QueryExecutionIds"]
    assert len(executions) == 1
    query = clients["athena"].get_query_execution(QueryExecutionId=executions[0])["QueryExecution"]["Query"]
    assert '"mlcycle_dev"."customer_profile"' in query and "ASOF" not in query
    tables = [t["Name"] for t in clients["glue"].get_tables(DatabaseName=DATABASE)["TableList"]]
    assert sorted(tables) == ["customer_activity", "customer_profile"]
