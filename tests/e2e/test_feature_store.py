"""The feature flow on the embedded AWS, from the synthesized app: upload -> prepare-data -> curated ->
DatasetValidated on the bus -> ingest-features Lambda -> offline partitions + Glue + online values ->
a point-in-time training frame read back through Arrow's S3 filesystem."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from mlcycle.application import cycle
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.features import FeatureStore
from mlcycle.local.session import LocalPlatform

pytestmark = pytest.mark.e2e


def test_upload_to_point_in_time_training_frame(
    fresh_platform: LocalPlatform, settings: Settings, tmp_path: Path
) -> None:
    local = fresh_platform
    c, p = local.clients, local.platform
    session = boto3.session.Session(region_name=settings.region)
    clients: dict[str, Any] = {
        n: session.client(n, endpoint_url=local.aws.endpoint_url)  # type: ignore[call-overload]
        for n in ("s3", "glue", "dynamodb")
    }
    # GIVEN a small upload of the example dataset in the landing bucket
    rows = churn.generate(200, seed=5)
    upload = tmp_path / "features.csv"
    rows.to_csv(upload, index=False)
    cycle.upload(c, p, upload, "churn", lambda _m: None)
    # WHEN prepare-data curates it and its DatasetValidated event reaches the ingest function
    store = FeatureStore.from_settings(
        settings,
        features_bucket=p.features_bucket,
        online_table=p.online_table,
        glue_database=local.stack.outputs.get("GlueDatabaseName") or settings.prefix.replace("-", "_"),
        **{k: clients[k] for k in ("s3", "glue", "dynamodb")},
    )
    ids = list(rows["customer_id"][:5])

    def online_ready() -> list[pd.DataFrame]:  # a list: wait_for tests truthiness, a frame has none
        frame = store.get_online_features(ids)
        ready = frame["tenure_months"].notna().all() and frame["monthly_charges"].notna().all()
        return [frame] if ready else []

    (online,) = cycle.wait_for("online features from the ingest function", online_ready, timeout=60)
    # THEN the online store holds each customer's values
    assert online["tenure_months"].tolist() == rows["tenure_months"][:5].tolist()
    # AND the offline partitions are cataloged in Glue per event date
    for view in ("customer_profile", "customer_activity"):
        dates = store.offline.partitions(view)
        assert dates and dates == sorted({f"{t:%Y-%m-%d}" for t in rows["event_time"]})
    # AND the ingest function left each view's snapshot current (read back through Arrow's S3 client)
    for view in store.views:
        snapshot = store.offline.snapshot(view, store.contract(view))
        assert snapshot is not None and snapshot.table.num_rows == 200
    # AND a point-in-time training frame sees each customer's row from its event time on, never before
    entity = pd.DataFrame(
        {
            "customer_id": [*ids, *ids],
            "event_timestamp": [*(rows["event_time"][:5] - timedelta(seconds=1)), *rows["event_time"][:5]],
            "churned": [*rows["churned"][:5], *rows["churned"][:5]],
        }
    )
    frame = store.get_historical_features(entity).to_pandas()
    assert frame["tenure_months"][:5].isna().all()
    assert frame["tenure_months"][5:].tolist() == rows["tenure_months"][:5].tolist()
    assert frame["payment_method"][5:].tolist() == rows["payment_method"][:5].tolist()
