"""The offline store: Parquet partitions per view and event date, cataloged as one Glue table per view.

Layout (features bucket): ``{view}/event_date=YYYY-MM-DD/{batch}.parquet``. A batch (one curated upload)
writes one object per event date it touches, named after the batch, so ingesting the same upload again
rewrites the same objects instead of adding rows. Each object holds the entity keys, the event time, the
created time (when the view declares one), the features and ``ingested_at``; the partition column lives
only in the path (Hive style), which is how Athena and the Glue table read it.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow import ipc

from mlcycle.config import ColumnType, DatasetContract, FeatureViewSpec
from mlcycle.data.catalog import GLUE_TYPES, PARQUET_INPUT, PARQUET_OUTPUT, PARQUET_SERDE
from mlcycle.features import snapshots
from mlcycle.features.engines import s3_filesystem
from mlcycle.features.snapshots import Snapshot
from mlcycle.features.sql import INGESTED_AT, PARTITION_COLUMN

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_glue.type_defs import ColumnTypeDef, PartitionInputTypeDef, TableInputTypeDef
    from mypy_boto3_s3 import S3Client

ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

log = logging.getLogger(__name__)

#: Reads of a view's snapshot before falling back to its partitions (see S3Objects.read_ipc).
SNAPSHOT_READ_ATTEMPTS = 3


def view_columns(spec: FeatureViewSpec, contract: DatasetContract) -> list[tuple[str, ColumnType]]:
    """The stored columns in order: keys, event time, created time, features, ``ingested_at``."""
    keys = [(k, contract.column(k).type) for k in spec.entity_keys]
    stamps: list[tuple[str, ColumnType]] = [(spec.event_timestamp, "timestamp")]
    if spec.created_timestamp:
        stamps.append((spec.created_timestamp, "timestamp"))
    return [*keys, *stamps, *((f.name, f.type) for f in spec.features), (INGESTED_AT, "timestamp")]


def arrow_schema(spec: FeatureViewSpec, contract: DatasetContract) -> pa.Schema:
    return pa.schema([pa.field(n, ARROW_TYPES[t]) for n, t in view_columns(spec, contract)])


def glue_columns(spec: FeatureViewSpec, contract: DatasetContract) -> list[ColumnTypeDef]:
    """The Glue table's columns (the CDK construct and the Glue adapter both use this)."""
    return [{"Name": n, "Type": GLUE_TYPES[t]} for n, t in view_columns(spec, contract)]


def glue_table_input(spec: FeatureViewSpec, contract: DatasetContract, location: str) -> TableInputTypeDef:
    """A ``TableInput`` for the Glue API: Parquet under ``location``, partitioned by event date."""
    return {
        "Name": spec.name,
        "Description": f"Feature view {spec.name} of dataset {spec.source}",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
        "PartitionKeys": [{"Name": PARTITION_COLUMN, "Type": "string"}],
        "StorageDescriptor": {
            "Columns": glue_columns(spec, contract),
            "Location": location,
            "InputFormat": PARQUET_INPUT,
            "OutputFormat": PARQUET_OUTPUT,
            "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE},
        },
    }


# --- where the objects live --------------------------------------------------------------------------------


class S3Objects:
    """Objects in one bucket. Listing and writes go through boto3; reads through Arrow's S3 filesystem
    (parallel, what the DuckDB runner uses) or, with ``reader="boto3"``, through the client itself (for
    moto in-process, which Arrow's own S3 client cannot reach)."""

    def __init__(self, s3: S3Client, bucket: str, *, reader: Literal["arrow", "boto3"] = "arrow") -> None:
        self.s3, self.bucket, self.reader = s3, bucket, reader

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def keys(self, prefix: str) -> list[str]:
        return list(self.listing(prefix))

    def listing(self, prefix: str) -> dict[str, str]:
        """Key -> ETag of every object under ``prefix`` (an ETag changes whenever the object does)."""
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def read_ipc(self, key: str, wanted: Callable[[pa.Schema], bool]) -> pa.Table | None:
        """An Arrow IPC file if there is one and ``wanted(its schema)``. Arrow's reader fetches the
        footer first, so an unwanted file's body is never downloaded (the boto3 reader gets it whole)."""
        if self.reader == "boto3":
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except self.s3.exceptions.NoSuchKey:
                return None
            return _read_if_wanted(pa.py_buffer(body), wanted)
        for attempt in range(1, SNAPSHOT_READ_ATTEMPTS + 1):
            try:
                with s3_filesystem(self.s3).open_input_file(f"{self.bucket}/{key}") as source:
                    return _read_if_wanted(source, wanted)
            except FileNotFoundError:
                return None
            except pa.ArrowInvalid:
                # Arrow reads the footer, then ranges: an ingestion that replaced the snapshot between
                # them leaves a mix of two files. Read it again; after that, the caller reads the
                # partitions the snapshot is made of (a cache: nothing is lost, only speed).
                if attempt == SNAPSHOT_READ_ATTEMPTS:
                    log.warning("snapshot %s unreadable %d times: reading its partitions", key, attempt)
        return None

    def read(self, keys: list[str], schema: pa.Schema) -> pa.Table:
        if self.reader == "boto3":
            tables = [_read_bytes(self.s3.get_object(Bucket=self.bucket, Key=k)["Body"].read()) for k in keys]
            return _concat(tables, schema)
        paths = [f"{self.bucket}/{k}" for k in keys]
        return ds.dataset(
            paths, schema=schema, format="parquet", filesystem=s3_filesystem(self.s3)
        ).to_table()


class LocalObjects:
    """Objects under a local directory: the same layout, for benchmarks and offline experiments."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def uri(self, key: str) -> str:
        return str(self.root / key)

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*.parquet"))

    def listing(self, prefix: str) -> dict[str, str]:
        """Key -> size and modification time (what changes when a file is rewritten)."""
        stats = {key: (self.root / key).stat() for key in self.keys(prefix)}
        return {key: f"{s.st_size}:{s.st_mtime_ns}" for key, s in stats.items()}

    def put(self, key: str, body: bytes) -> None:
        """Write to a temporary file, then rename: a reader (or a memory map) never sees half a file."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as file:
            file.write(body)
        Path(temporary).replace(path)

    def read_ipc(self, key: str, wanted: Callable[[pa.Schema], bool]) -> pa.Table | None:
        """An Arrow IPC file if there is one and ``wanted(its schema)``, memory-mapped: pages are read
        when touched, and shared between readers."""
        path = self.root / key
        if not path.exists():
            return None
        return _read_if_wanted(pa.memory_map(str(path)), wanted)

    def read(self, keys: list[str], schema: pa.Schema) -> pa.Table:
        paths = [str(self.root / k) for k in keys]
        return ds.dataset(paths, schema=schema, format="parquet").to_table()


Objects = S3Objects | LocalObjects


def _read_if_wanted(source: Any, wanted: Callable[[pa.Schema], bool]) -> pa.Table | None:
    reader = ipc.open_file(source)  # reads the footer (schema and batch offsets) only
    return reader.read_all() if wanted(reader.schema) else None


def _read_bytes(body: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(body))


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])


# --- the store ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrittenBatch:
    view: str
    rows: int
    skipped_rows: int
    partitions: tuple[str, ...]
    uris: tuple[str, ...]
    #: The objects' keys in the store (what :meth:`OfflineStore.compact` adds to a snapshot).
    keys: tuple[str, ...] = ()


class OfflineStore:
    """Writes and reads a view's partitions; registers them in Glue when a client and database are given."""

    def __init__(
        self, objects: Objects, *, glue: GlueClient | None = None, database: str | None = None
    ) -> None:
        self.objects, self.glue, self.database = objects, glue, database

    def location(self, view: str) -> str:
        return self.objects.uri(f"{view}/")

    def write(
        self,
        spec: FeatureViewSpec,
        contract: DatasetContract,
        rows: pa.Table,
        *,
        batch_id: str,
        ingested_at: datetime,
    ) -> WrittenBatch:
        """Rows of the source dataset -> the view's partitions (rows lacking keys or event time skipped)."""
        table, skipped = prepare_rows(spec, contract, rows, ingested_at)
        return self.write_prepared(spec, table, batch_id=batch_id, skipped=skipped)

    def write_prepared(
        self, spec: FeatureViewSpec, table: pa.Table, *, batch_id: str, skipped: int = 0
    ) -> WrittenBatch:
        """Rows already shaped by :func:`prepare_rows` -> one object per event date, named after the batch."""
        dates = pc.strftime(table[spec.event_timestamp], format="%Y-%m-%d")
        keys, partitions = [], sorted(set(dates.to_pylist()))
        for day in partitions:
            part = table.filter(pc.equal(dates, day))
            buffer = io.BytesIO()
            pq.write_table(part, buffer, compression="zstd")
            key = f"{spec.name}/{PARTITION_COLUMN}={day}/{batch_id}.parquet"
            self.objects.put(key, buffer.getvalue())
            keys.append(key)
        if self.glue is not None and partitions:
            self.register_partitions(spec, partitions)
        uris = tuple(self.objects.uri(key) for key in keys)
        return WrittenBatch(spec.name, table.num_rows, skipped, tuple(partitions), uris, tuple(keys))

    def read(
        self, spec: FeatureViewSpec, contract: DatasetContract, dates: tuple[str, str] | None = None
    ) -> pa.Table:
        """The view's rows in the partitions ``dates`` (inclusive ``YYYY-MM-DD`` bounds), or all."""
        keys = [k for k in self.objects.keys(f"{spec.name}/") if _in_range(_partition(k), dates)]
        return self.objects.read(keys, arrow_schema(spec, contract))

    # --- snapshots (see mlcycle.features.snapshots) -------------------------------------------------------

    def compact(self, spec: FeatureViewSpec, contract: DatasetContract, added: Sequence[str] = ()) -> int:
        """Bring the view's snapshot up to every partition object it has now; the rows it holds.

        When the current snapshot was built from exactly the objects there are now except the new ones
        in ``added`` (the batch just written), the new snapshot is that snapshot plus those objects' rows:
        one read of the snapshot instead of one of every partition object, which grows with every batch.
        Otherwise (a rewritten object, a failed compaction) it is rebuilt from all of them.
        """
        listing = self._partition_listing(spec)
        schema = arrow_schema(spec, contract)
        sources = snapshots.fingerprint(listing, schema)
        new = [key for key in added if key in listing]
        before = {key: tag for key, tag in listing.items() if key not in set(new)}
        previous = self._current_snapshot(spec, snapshots.fingerprint(before, schema)) if new else None
        if previous is not None:
            rows = pa.concat_tables([previous.rows.cast(schema), self.objects.read(new, schema)])
        else:
            rows = self.objects.read(list(listing), schema)
        table = snapshots.build(spec, rows, sources)
        self.objects.put(snapshots.snapshot_key(spec.name), snapshots.to_bytes(table))
        return int(table.num_rows)

    def snapshot(self, spec: FeatureViewSpec, contract: DatasetContract) -> Snapshot | None:
        """The view's snapshot if it was built from exactly the partition objects there are now.

        Any object added or rewritten since (an ingestion that did not compact, a compaction that
        failed) makes it stale, and then this returns None: callers read the partitions instead.
        """
        listing = self._partition_listing(spec)
        return self._current_snapshot(spec, snapshots.fingerprint(listing, arrow_schema(spec, contract)))

    def for_join(
        self, spec: FeatureViewSpec, contract: DatasetContract, dates: tuple[str, str] | None = None
    ) -> pa.Table | Snapshot:
        """What a point-in-time join reads: the view's current snapshot (``compact`` views), else its
        rows in the partitions ``dates``. One listing serves both the freshness check and the read."""
        listing = self._partition_listing(spec)
        schema = arrow_schema(spec, contract)
        if spec.compact:
            snapshot = self._current_snapshot(spec, snapshots.fingerprint(listing, schema))
            if snapshot is not None:
                return snapshot
        return self.objects.read([k for k in listing if _in_range(_partition(k), dates)], schema)

    def _current_snapshot(self, spec: FeatureViewSpec, sources: str) -> Snapshot | None:
        key = snapshots.snapshot_key(spec.name)
        table = self.objects.read_ipc(key, lambda schema: snapshots.sources_of(schema) == sources)
        return Snapshot.from_table(table) if table is not None else None

    def _partition_listing(self, spec: FeatureViewSpec) -> dict[str, str]:
        listing = self.objects.listing(f"{spec.name}/")
        return {k: tag for k, tag in listing.items() if _partition(k) is not None}

    # --- Glue ----------------------------------------------------------------------------------------------

    def _catalog(self) -> tuple[GlueClient, str]:
        if self.glue is None or self.database is None:
            raise ValueError("this offline store has no Glue catalog (a client and a database)")
        return self.glue, self.database

    def ensure_table(self, spec: FeatureViewSpec, contract: DatasetContract) -> None:
        """Create the view's Glue table unless it exists (the stack creates them; tests and tools may not)."""
        glue, database = self._catalog()
        try:
            glue.get_table(DatabaseName=database, Name=spec.name)
        except glue.exceptions.EntityNotFoundException:
            table = glue_table_input(spec, contract, self.location(spec.name))
            glue.create_table(DatabaseName=database, TableInput=table)

    def register_partitions(self, spec: FeatureViewSpec, dates: Iterable[str]) -> None:
        """Add the date partitions Glue does not know yet (existing ones are left as they are)."""
        glue, database = self._catalog()
        table = glue.get_table(DatabaseName=database, Name=spec.name)["Table"]
        descriptor = table["StorageDescriptor"]
        base = descriptor["Location"].rstrip("/")
        inputs: list[PartitionInputTypeDef] = [
            {
                "Values": [day],
                "StorageDescriptor": {**descriptor, "Location": f"{base}/{PARTITION_COLUMN}={day}/"},
            }
            for day in dates
        ]
        for start in range(0, len(inputs), 100):  # the API's limit per call
            answer = glue.batch_create_partition(
                DatabaseName=database,
                TableName=spec.name,
                PartitionInputList=inputs[start : start + 100],
            )
            errors = [
                e
                for e in answer.get("Errors", [])
                if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"
            ]
            if errors:
                raise RuntimeError(f"Glue refused partitions of {spec.name}: {errors}")

    def partitions(self, view: str) -> list[str]:
        glue, database = self._catalog()
        paginator = glue.get_paginator("get_partitions")
        pages = paginator.paginate(DatabaseName=database, TableName=view)
        return sorted(p["Values"][0] for page in pages for p in page["Partitions"])


def prepare_rows(
    spec: FeatureViewSpec, contract: DatasetContract, rows: pa.Table, ingested_at: datetime
) -> tuple[pa.Table, int]:
    """Select and type the view's columns, drop unplaceable rows, keep the last of exact duplicates."""
    schema = arrow_schema(spec, contract)
    stamped = rows.append_column(
        INGESTED_AT, pa.array([ingested_at] * rows.num_rows, ARROW_TYPES["timestamp"])
    )
    table = pa.table({f.name: _cast(stamped[f.name], f.type) for f in schema})
    placeable = pc.is_valid(table[spec.event_timestamp])
    for key in spec.entity_keys:
        placeable = pc.and_(placeable, pc.is_valid(table[key]))
    kept = table.filter(placeable)
    return _last_of_duplicates(kept, spec), table.num_rows - kept.num_rows


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(column.type) and column.type.tz is None:
        column = pc.assume_timezone(column, "UTC")  # naive times in curated data are UTC
    return column.cast(target)


def _last_of_duplicates(table: pa.Table, spec: FeatureViewSpec) -> pa.Table:
    """One row per (keys, event time, created time): the last in upload order, as a re-send corrects."""
    ident = [
        *spec.entity_keys,
        spec.event_timestamp,
        *([spec.created_timestamp] if spec.created_timestamp else []),
    ]
    numbered = table.append_column("__i", pa.array(range(table.num_rows), pa.int64()))
    last = numbered.group_by(ident, use_threads=False).aggregate([("__i", "max")])["__i_max"]
    if len(last) == table.num_rows:
        return table
    return table.take(pc.sort_indices(last))


def _partition(key: str) -> str | None:
    for part in key.split("/"):
        if part.startswith(f"{PARTITION_COLUMN}="):
            return part.split("=", 1)[1]
    return None


def _in_range(day: str | None, dates: tuple[str, str] | None) -> bool:
    return day is not None and (dates is None or dates[0] <= day <= dates[1])
