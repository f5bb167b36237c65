"""Ingestion: curated data of a source dataset -> offline partitions (+ Glue) and online latest values.

A curated upload (``curated/{dataset}/ingest_date=.../{upload-id}.parquet``) is one batch: its id names
the offline objects it writes, so ingesting the same upload twice (a redelivered event) rewrites them
instead of adding rows, and the online store's newer-wins rule makes the second write a no-op. After its
partitions, each view's snapshot is rebuilt (``compact``; the ingest function runs one batch at a time,
so two rebuilds never race).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlcycle.aws import split_s3_uri
from mlcycle.features.offline import prepare_rows
from mlcycle.features.store import FeatureStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass
class ViewIngest:
    view: str
    rows: int
    skipped_rows: int
    partitions: list[str]
    online_written: int = 0
    online_stale: int = 0
    #: Rows in the view's snapshot after this batch (0: the view keeps none, ``compact`` is off).
    snapshot_rows: int = 0


@dataclass
class IngestResult:
    dataset: str
    batch_id: str
    source: str
    views: list[ViewIngest] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest_rows(
    store: FeatureStore,
    dataset: str,
    rows: pa.Table | pd.DataFrame,
    *,
    batch_id: str,
    source: str = "",
    ingested_at: datetime | None = None,
) -> IngestResult:
    """Rows of ``dataset`` -> each view it feeds: offline partitions, then (online views) latest values."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)
    stamp = ingested_at or datetime.now(UTC)
    result = IngestResult(dataset=dataset, batch_id=batch_id, source=source)
    for view in store.views_of(dataset):
        typed, skipped = prepare_rows(view, store.contract(view), table, stamp)
        written = store.offline.write_prepared(view, typed, batch_id=batch_id, skipped=skipped)
        report = ViewIngest(view.name, written.rows, written.skipped_rows, list(written.partitions))
        if view.compact:
            report.snapshot_rows = store.offline.compact(view, store.contract(view), added=written.keys)
        if view.online and store.online is not None:
            online = store.online.write(view, typed, stamp)
            report.online_written, report.online_stale = online.written, online.stale
        result.views.append(report)
    return result


def ingest_curated(
    store: FeatureStore, dataset: str, curated_uri: str, *, s3: S3Client, ingested_at: datetime | None = None
) -> IngestResult:
    """One curated object (a ``DatasetValidated`` event's ``curated_uri``) -> the dataset's views."""
    bucket, key = split_s3_uri(curated_uri)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    batch_id = PurePosixPath(key).stem  # the upload id: the same upload always writes the same objects
    rows = pq.read_table(io.BytesIO(body))
    return ingest_rows(store, dataset, rows, batch_id=batch_id, source=curated_uri, ingested_at=ingested_at)


def ingest_dataset(
    store: FeatureStore,
    dataset: str,
    *,
    s3: S3Client,
    curated_bucket: str,
    ingested_at: datetime | None = None,
) -> list[IngestResult]:
    """Every curated object of ``dataset`` (a backfill; re-running it changes nothing)."""
    paginator = s3.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=curated_bucket, Prefix=f"curated/{dataset}/")
    keys = sorted(
        o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(".parquet")
    )
    return [
        ingest_curated(store, dataset, f"s3://{curated_bucket}/{key}", s3=s3, ingested_at=ingested_at)
        for key in keys
    ]
