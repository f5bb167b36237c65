"""Compacted views: every offline row of a view in one key-sorted Arrow file, for fast point-in-time reads.

Ingestion writes partitions (one object per batch and event date), which is what Athena and Glue read.
A point-in-time join over them must read dozens of small Parquet objects and sort a million rows by
(key, time) on every call. A snapshot does both once, at ingestion: the rows sorted in the join's order
``(key code, event_ts, created_ts, ingested_at, input order)`` with the combined int64 search keys
precomputed, as an uncompressed Arrow IPC file that is memory-mapped (local) or read in one request
(S3). Reads then cost a binary search of the entity rows and a gather (:mod:`mlcycle.features.search`).

Layout: ``_snapshots/{view}.arrow`` in the features bucket, outside the view's Glue location ``{view}/``
so Athena never reads it. The file's schema metadata names the partition objects it was built from
(``sources``, a hash of their keys and ETags / sizes); a reader uses it only when that still matches the
listing, and reads the partitions otherwise, so a stale snapshot is never read.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import ipc

from mlcycle.config import FeatureViewSpec
from mlcycle.features.keys import encode
from mlcycle.features.ordering import KEY_LIMIT, by_visibility, join_order, micros_and_nulls, visible_from

Int64s = npt.NDArray[np.int64]

SNAPSHOT_PREFIX = "_snapshots/"
FORMAT_VERSION = "1"
CODE = "__code"
ORDER_KEY = "__order_key"
VIS_KEY = "__vis_key"
VIS_BEST = "__vis_best"
INTERNAL = (CODE, ORDER_KEY, VIS_KEY, VIS_BEST)


def snapshot_key(view: str) -> str:
    return f"{SNAPSHOT_PREFIX}{view}.arrow"


def fingerprint(listing: Mapping[str, str], schema: pa.Schema) -> str:
    """A hash of the partition objects (key -> ETag or size/mtime) and the view's stored schema."""
    digest = hashlib.sha256(FORMAT_VERSION.encode())
    digest.update(schema.serialize().to_pybytes())
    for key in sorted(listing):
        digest.update(f"{key}\0{listing[key]}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """A loaded snapshot. ``span == 0`` means the combined keys would overflow int64: the engine then
    treats :attr:`rows` like partitions (still sorted, so its own sort is cheap)."""

    table: pa.Table
    low: int
    high: int
    span: int

    @property
    def rows(self) -> pa.Table:
        """The view's stored columns, in the join's order."""
        return self.table.drop_columns([c for c in INTERNAL if c in self.table.column_names])

    def dictionary(self, keys: tuple[str, ...]) -> pa.Table:
        """The distinct key tuples in code order (code ``i`` is row ``i``)."""
        code = _ints(self.table[CODE])
        if len(code) == 0:
            return self.table.select(list(keys)).slice(0, 0)
        starts = np.searchsorted(code, np.arange(int(code[-1]) + 1))
        return self.table.select(list(keys)).take(pa.array(starts))

    def column(self, name: str) -> Int64s:
        return _ints(self.table[name])

    @classmethod
    def from_table(cls, table: pa.Table) -> Snapshot:
        meta = table.schema.metadata or {}
        return cls(
            table,
            low=int(meta[b"low"]),
            high=int(meta[b"high"]),
            span=int(meta[b"span"]),
        )


def sources_of(schema: pa.Schema) -> str | None:
    """The ``sources`` fingerprint a snapshot was built from (None: not a snapshot of this format)."""
    meta = schema.metadata or {}
    if meta.get(b"format") != FORMAT_VERSION.encode():
        return None
    value = meta.get(b"sources")
    return value.decode() if value is not None else None


def build(spec: FeatureViewSpec, rows: pa.Table, sources: str) -> pa.Table:
    """The snapshot of ``rows`` (a view's stored rows, in partition listing order) as an Arrow table."""
    placeable = pc.is_valid(rows[spec.event_timestamp])
    for key in spec.entity_keys:
        placeable = pc.and_(placeable, pc.is_valid(rows[key]))
    rows = rows.filter(placeable)  # rows without keys or event time can never be picked
    code = encode(rows, spec.entity_keys)[1]
    event = micros_and_nulls(rows[spec.event_timestamp], fill=0)[0]
    vis = visible_from(spec, rows, event)
    low = int(event.min()) if len(event) else 0
    high = int(vis.max()) if len(vis) else 0
    cardinality = int(code.max()) + 1 if len(code) else 0
    span = high - low + 2
    if cardinality * span >= KEY_LIMIT:
        span = 0  # the engine falls back to searching the rows like partitions
        order = join_order(spec, rows, code, event)
    else:
        order = join_order(spec, rows, code * span + (event - low + 1))
    table = rows.take(pa.array(order)).append_column(CODE, pa.array(code[order]))
    if span:
        base = code[order] * span
        table = table.append_column(ORDER_KEY, pa.array(base + (event[order] - low + 1)))
        if spec.created_timestamp is not None:
            # Guarded searches go by visibility: sorted (key, vis) with the best order position so far.
            vis_key, best = by_visibility(base + (vis[order] - low + 1))
            table = table.append_column(VIS_KEY, pa.array(vis_key))
            table = table.append_column(VIS_BEST, pa.array(best))
    meta = {"format": FORMAT_VERSION, "sources": sources, "low": str(low), "high": str(high)}
    return table.replace_schema_metadata(meta | {"span": str(span)})


def to_bytes(table: pa.Table) -> bytes:
    """Uncompressed IPC file: memory-maps without copies and reads without decoding."""
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _ints(column: pa.ChunkedArray) -> Int64s:
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return np.asarray(array.to_numpy(zero_copy_only=False), np.int64)
