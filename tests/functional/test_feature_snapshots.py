"""Snapshots of the offline store (mlcycle.features.snapshots): kept current by ingestion, never read
when stale, and giving exactly the rows the partitions give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.features import FeatureStore, LocalObjects, OfflineStore, ingest_rows
from mlcycle.features.offline import prepare_rows
from mlcycle.features.snapshots import snapshot_key

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _batches(customers: int, batches: int) -> list[pd.DataFrame]:
    """Batches of the same customers at random times; batch 2 re-sends some of batch 1's instants with
    other values (a correction), so (key, event time) ties are broken by ingestion time."""
    frames = [churn.generate(customers, seed=seed, start=T0, days=20) for seed in range(batches)]
    for frame in frames[1:]:
        frame["customer_id"] = frames[0]["customer_id"]
    if batches > 1:
        resent = frames[1].index % 3 == 0
        frames[1]["event_time"] = frames[0]["event_time"].where(resent, frames[1]["event_time"])
    return frames


def _entity_rows(frames: list[pd.DataFrame], n: int) -> pd.DataFrame:
    ids = [*pd.concat(frames)["customer_id"].drop_duplicates(), "nobody"]
    offsets = [timedelta(minutes=(i * 97) % (25 * 24 * 60)) for i in range(n)]
    return pd.DataFrame(
        {
            "customer_id": [ids[(i * 7) % len(ids)] for i in range(n)],
            "event_timestamp": [T0 + o for o in offsets],
            "row": range(n),
        }
    )


def _local_store(
    root: Path, settings: Settings, engine: Literal["search", "duckdb"] = "search"
) -> FeatureStore:
    contracts = {settings.problem.dataset.name: settings.problem.dataset}
    offline = OfflineStore(LocalObjects(root))
    return FeatureStore(settings.feature_views, contracts, offline=offline, engine=engine)


def _ingest(store: FeatureStore, frames: list[pd.DataFrame]) -> None:
    for i, frame in enumerate(frames):
        ingest_rows(store, "churn", frame, batch_id=f"b{i}", ingested_at=T0 + timedelta(days=60, minutes=i))


def test_ingestion_keeps_a_snapshot_outside_the_glue_location(
    store: FeatureStore, clients: dict[str, Any]
) -> None:
    # GIVEN two batches ingested into the store on moto
    frames = _batches(40, 2)
    results = [
        ingest_rows(store, "churn", f, batch_id=f"b{i}", ingested_at=T0 + timedelta(days=60, minutes=i))
        for i, f in enumerate(frames)
    ]
    # THEN each ingestion rebuilt each view's snapshot over all rows so far
    assert [[v.snapshot_rows for v in r.views] for r in results] == [[40, 40], [80, 80]]
    for view in store.views:
        contract = store.contract(view)
        key = snapshot_key(view.name)
        assert clients["s3"].head_object(Bucket="features", Key=key)["ContentLength"] > 0
        assert store.offline.snapshot(view, contract) is not None
        # AND it lives outside the view's Glue location, so Athena never reads it
        location = clients["glue"].get_table(DatabaseName="mlcycle_dev", Name=view.name)["Table"]
        assert not f"s3://features/{key}".startswith(location["StorageDescriptor"]["Location"])
        assert store.offline.read(view, contract).num_rows == 80


def test_a_stale_snapshot_is_never_read(store: FeatureStore) -> None:
    # GIVEN a compacted store, then a batch written to the partitions without compaction
    frames = _batches(30, 2)
    _ingest(store, frames[:1])
    late = frames[1]
    for view in store.views:
        typed, _ = prepare_rows(
            view, store.contract(view), pa.Table.from_pandas(late), T0 + timedelta(days=61)
        )
        store.offline.write_prepared(view, typed, batch_id="late")
    # THEN the snapshot no longer matches the partitions and is not used
    assert all(store.offline.snapshot(v, store.contract(v)) is None for v in store.views)
    entity = _entity_rows(frames, 60)
    from_partitions = store.get_historical_features(entity)
    # AND once compacted again, the snapshot gives the same rows, including the late batch's values
    for view in store.views:
        store.offline.compact(view, store.contract(view))
    assert all(store.offline.snapshot(v, store.contract(v)) is not None for v in store.views)
    assert store.get_historical_features(entity).equals(from_partitions)
    assert from_partitions["support_calls"].null_count < entity.shape[0]


def test_a_snapshot_of_another_schema_is_not_read(tmp_path: Path, settings: Settings) -> None:
    # GIVEN a compacted local store
    store = _local_store(tmp_path, settings)
    _ingest(store, _batches(10, 1))
    view = store.view("customer_activity")
    assert store.offline.snapshot(view, store.contract(view)) is not None
    # WHEN the view declares one feature fewer
    narrower = view.model_copy(update={"features": view.features[:2]})
    # THEN its stored schema differs from the snapshot's and the snapshot is stale
    assert store.offline.snapshot(narrower, store.contract(view)) is None


def test_snapshots_and_partitions_give_the_same_rows(tmp_path: Path, settings: Settings) -> None:
    # GIVEN three batches with corrected instants, ingested into a local store (snapshots kept)
    store = _local_store(tmp_path, settings)
    frames = _batches(200, 3)
    _ingest(store, frames)
    entity = _entity_rows(frames, 500)
    # WHEN the same entity rows are joined from the snapshots, then from the partitions alone
    from_snapshots = store.get_historical_features(entity)
    for view in store.views:
        (tmp_path / snapshot_key(view.name)).unlink()
    from_partitions = store.get_historical_features(entity)
    # THEN the rows are equal, and the DuckDB engine agrees with both
    assert from_snapshots.equals(from_partitions)
    _ingest(store, frames)  # snapshots back
    duckdb = _local_store(tmp_path, settings, engine="duckdb")
    by_duckdb = duckdb.get_historical_features(entity).sort_by("row").to_pandas()
    pd.testing.assert_frame_equal(by_duckdb, from_snapshots.to_pandas())
    assert from_snapshots["tenure_months"].null_count < 500


def test_ingestion_adds_its_batch_to_the_snapshot_without_reading_older_partitions(
    tmp_path: Path, settings: Settings, monkeypatch: Any
) -> None:
    # GIVEN a store with three batches ingested (snapshots kept)
    store = _local_store(tmp_path, settings)
    frames = _batches(100, 4)
    _ingest(store, frames[:3])
    objects = store.offline.objects
    read: list[str] = []
    original = objects.read

    def counted(keys: list[str], schema: pa.Schema) -> pa.Table:
        read.extend(keys)
        return original(keys, schema)

    monkeypatch.setattr(objects, "read", counted)
    # WHEN a fourth batch is ingested
    ingest_rows(store, "churn", frames[3], batch_id="b3", ingested_at=T0 + timedelta(days=60, minutes=3))
    # THEN only its own partition objects were read to bring the snapshots up to date
    assert read and all(key.endswith("/b3.parquet") for key in read)
    # AND each snapshot is the one a rebuild from every partition gives
    monkeypatch.setattr(objects, "read", original)
    for view in store.views:
        contract = store.contract(view)
        incremental = store.offline.snapshot(view, contract)
        assert incremental is not None
        (tmp_path / snapshot_key(view.name)).unlink()
        store.offline.compact(view, contract)
        rebuilt = store.offline.snapshot(view, contract)
        assert rebuilt is not None and rebuilt.table.equals(incremental.table)
