"""The embedded point-in-time engine: sorted arrays and binary search (NumPy), no SQL.

It answers the same :class:`~mlcycle.features.sql.PointInTimeQuery` as the SQL builder, with the same rule
(see :mod:`mlcycle.features.sql`): per entity row and view, the greatest visible row in the total order
``(event_ts, created_ts, ingested_at)`` among rows of the same keys visible at the row's time (from
``event_ts``, or from ``greatest(event_ts, created_ts)`` with the leakage guard), kept only if its event
time is within the TTL; otherwise nulls. Entity rows keep their order and duplicates.

Why it is faster than the SQL join: every view row gets one int64 search key ``key_code * span +
time_offset``, so "same key, time at or before t" becomes one ``searchsorted`` of the entity rows into
the view's sorted keys; no join, no dedup, no sort back to entity order (winners are scattered into place).
The entity rows are sorted once by key for all views with the same keys (a radix sort), because a binary
search of needles grouped by key is several times faster than of random ones: each key's view rows are
close together, so the searches stay in cache. Key codes follow the sorted key order on both sides, so
the grouping holds for every view. With a snapshot (:mod:`mlcycle.features.snapshots`) the view side is
precomputed and a join is only the entity side's search and a gather. The leakage guard only changes
which array is searched (see :func:`mlcycle.features.ordering.by_visibility`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.features.keys import codes, encode
from mlcycle.features.ordering import KEY_LIMIT, by_visibility, join_order, micros_and_nulls, visible_from
from mlcycle.features.snapshots import ORDER_KEY, VIS_BEST, VIS_KEY, Snapshot
from mlcycle.features.sql import PointInTimeQuery, ViewSource

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_MICROS = 1_000_000


@dataclass(frozen=True)
class SortedSearchEngine:
    """Point-in-time joins over Arrow tables in this process; the default engine of ``FeatureStore``.

    ``threads``: views joined at once (default: one per view, up to the CPU count). NumPy's sorts and
    searches and Arrow's kernels release the GIL, so views proceed in parallel on threads, as a polars or
    DuckDB join would use every core.
    """

    threads: int | None = None

    def run(self, query: PointInTimeQuery, inputs: Mapping[str, pa.Table | Snapshot]) -> pa.Table:
        """The entity table's ``query.entity_columns`` (in row order), then every view's outputs.

        A view's input is its rows (partitions read as they are) or its :class:`Snapshot`, whose
        precomputed search keys save the sort.
        """
        entity = inputs[query.entity_table]
        assert isinstance(entity, pa.Table)
        times, timeless = micros_and_nulls(entity[query.timestamp_column], fill=0)
        # One entity index per distinct key tuple, built before the views fan out.
        indexes = {
            keys: _EntityIndex.build(keys, entity, times, timeless)
            for keys in dict.fromkeys(v.spec.entity_keys for v in query.views)
        }

        def join(view: ViewSource) -> pa.Table:
            source = inputs[view.table]
            rows = source.table if isinstance(source, Snapshot) else source
            features = rows.select([f for f, _ in view.outputs])
            if rows.num_rows == 0:
                return _nulls(features, entity.num_rows)
            index = indexes[view.spec.entity_keys]
            if isinstance(source, Snapshot) and source.span:
                winner, hit = _snapshot_winners(view, source, index, query.leakage_guard)
            else:  # partitions, or a snapshot without search keys (they would overflow int64)
                winner, hit = _winners(view, rows, index, query.leakage_guard)
            return _gather(features, winner, hit)

        workers = min(self.threads or os.cpu_count() or 1, len(query.views))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                taken = list(pool.map(join, query.views))
        else:
            taken = [join(view) for view in query.views]
        columns: dict[str, pa.ChunkedArray] = {c: entity[c] for c in query.entity_columns}
        for view, table in zip(query.views, taken, strict=True):
            columns |= {out: table[feature] for feature, out in view.outputs}
        return pa.table(columns)


@dataclass(frozen=True)
class _EntityIndex:
    """The entity rows' key tuples as codes in sorted key order (:mod:`mlcycle.features.keys`), and the
    rows sorted by code.

    View rows are looked up in the same numbering (:meth:`lookup`), so equal keys get equal codes and a
    view row whose keys no entity row has gets none (-1): it can never be picked, and is dropped early.
    """

    #: The distinct entity key tuples, sorted: row ``i`` has code ``i``.
    distinct: pa.Table
    #: Entity row numbers sorted by code; and code, time, "matches nothing" in that order.
    order: Int64s
    codes: Int64s
    times: Int64s
    unknown: Bools

    @property
    def cardinality(self) -> int:
        return max(int(self.distinct.num_rows), 1)

    @classmethod
    def build(cls, keys: tuple[str, ...], entity: pa.Table, times: Int64s, timeless: Bools) -> _EntityIndex:
        distinct, numbered = encode(entity, keys)
        unknown = timeless | (numbered < 0)  # a null key (or time) matches nothing, as NULL = x in SQL
        numbered = np.where(unknown, -1, numbered)
        order = _sort_by_code(numbered)
        return cls(distinct, order, numbered[order], times[order], unknown[order])

    def lookup(self, rows: pa.Table) -> Int64s:
        """The code of each view row's key tuple; -1 where no entity row has it (or a key is null)."""
        return codes(rows, self.distinct)

    def codes_in(self, dictionary: pa.Table) -> Int64s:
        """Per sorted entity row, the code of its key tuple in a snapshot's ``dictionary`` (-1: none).

        Both numberings follow the sorted key order, so the result ascends with the entity codes: the
        needles built from it stay grouped by key, in key order.
        """
        if dictionary.num_rows == 0 or self.distinct.num_rows == 0:
            return np.full(len(self.codes), -1, np.int64)
        # Compare in the view's types (the entity's distinct keys cast to them), as SQL would cast.
        mapping = codes(self.distinct.cast(dictionary.schema), dictionary)
        return np.where(self.unknown, -1, mapping[np.maximum(self.codes, 0)])


def _sort_by_code(codes: Int64s) -> Int64s:
    """Row numbers sorted by key code, stably; -1 (matches nothing) first.

    Sorting by code alone keeps the searches cache-local (one key's needles are few and its view rows
    close together), and NumPy radix-sorts 16-bit keys: an LSD pass per 16-bit digit of the code costs
    a fraction of one int64 argsort of (code, time).
    """
    shifted = codes + 1
    order = np.arange(len(shifted), dtype=np.int64)
    top, shift = int(shifted.max()) if len(shifted) else 0, 0
    while True:
        digit = ((shifted[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
        if top >> shift == 0:
            return order


def _winners(
    view: ViewSource, rows: pa.Table, entity: _EntityIndex, leakage_guard: bool
) -> tuple[Int64s, Bools]:
    """Per entity row, the index into ``rows`` of its winning view row, and whether there is one."""
    spec = view.spec
    event, no_event = micros_and_nulls(rows[spec.event_timestamp], fill=0)
    guarded = leakage_guard and spec.created_timestamp is not None
    vis = visible_from(spec, rows, event) if guarded else event

    view_codes = entity.lookup(rows)
    # A view row without event time or known keys can never be picked (SQL: null comparisons, no match).
    placeable = ~no_event & (view_codes >= 0)
    everywhere = bool(placeable.all())  # the usual case: skip the masking passes
    event_off, vis_off, entity_off, span = _time_offsets(
        event, vis, entity.times, placeable, entity.cardinality
    )
    base = view_codes * span
    order_key = base + event_off if everywhere else np.where(placeable, base + event_off, -1)
    order = join_order(spec, rows, order_key)  # (keys, event, created, ingested)
    sorted_key = order_key[order]
    start = 0 if everywhere else int(np.searchsorted(sorted_key, 0))  # unplaceable rows (-1) sort first
    order, sorted_key = order[start:], sorted_key[start:]
    if len(order) == 0:
        return np.zeros(len(entity.order), np.int64), np.zeros(len(entity.order), np.bool_)
    # Unguarded, a row is visible from its event time: the join order itself is searched, and the last
    # entry at or before (key, t) is the greatest visible row. Guarded, see by_visibility.
    search, best = by_visibility((base + vis_off)[order]) if guarded else (sorted_key, None)

    # The entity rows grouped by code: the binary searches stay cache-local.
    found = np.searchsorted(search, entity.codes * span + entity_off, side="right") - 1
    safe = np.maximum(found, 0)
    # A hit is a row of the same key at or before the time: that key's block starts at code * span.
    hit = (found >= 0) & (search[safe] >= entity.codes * span) & ~entity.unknown
    winner = order[best[safe]] if best is not None else order[safe]
    if spec.ttl_seconds is not None:
        # The winner is the newest visible row: if it has expired, every visible row has.
        hit &= event[winner] >= entity.times - spec.ttl_seconds * _MICROS
    return _in_entity_order(entity, winner, hit)


def _snapshot_winners(
    view: ViewSource, snapshot: Snapshot, entity: _EntityIndex, leakage_guard: bool
) -> tuple[Int64s, Bools]:
    """:func:`_winners` over a snapshot: its rows are already in the join's order with their search
    keys computed, so only the entity rows' needles are built and searched."""
    spec = view.spec
    guarded = leakage_guard and spec.created_timestamp is not None
    code = entity.codes_in(snapshot.dictionary(spec.entity_keys))
    known = code >= 0
    base = code * snapshot.span
    offset = np.clip(entity.times - snapshot.low + 1, 0, snapshot.high - snapshot.low + 1)
    search = snapshot.column(VIS_KEY if guarded else ORDER_KEY)
    found = np.searchsorted(search, np.where(known, base + offset, 0), side="right") - 1
    safe = np.maximum(found, 0)
    hit = known & (found >= 0) & (search[safe] >= base)  # a row of the same key, at or before the time
    winner = snapshot.column(VIS_BEST)[safe] if guarded else safe
    if spec.ttl_seconds is not None:
        # The winner's event time, read back from its order key (same code, so the same base).
        event = snapshot.column(ORDER_KEY)[winner] - base + snapshot.low - 1
        hit &= event >= entity.times - spec.ttl_seconds * _MICROS
    return _in_entity_order(entity, winner, hit)


def _in_entity_order(entity: _EntityIndex, winner: Int64s, hit: Bools) -> tuple[Int64s, Bools]:
    """Winners found in code order, scattered back to entity row order."""
    indices = np.empty_like(winner)
    indices[entity.order] = winner
    hits = np.empty_like(hit)
    hits[entity.order] = hit
    return indices, hits


def _gather(features: pa.Table, winner: Int64s, hit: Bools) -> pa.Table:
    """The winners' feature values; nulls where an entity row has no visible row in TTL.

    Arrow's take with null indices costs about three times a plain take, so the take is plain (a row
    without a hit takes some row) and the misses become nulls through the validity bitmap afterwards.
    """
    taken = features.take(pa.array(np.where(hit, winner, 0)))
    if bool(hit.all()):
        return taken
    return pa.table({name: _masked(taken[name].combine_chunks(), hit) for name in taken.column_names})


def _masked(array: pa.Array, valid: Bools) -> pa.Array:
    """``array`` with nulls where ``valid`` is false (and where it had nulls); buffers reused."""
    if array.offset:  # the bitmap below numbers bits from the array's start; take() never returns these
        return pc.if_else(pa.array(valid), array, pa.scalar(None, array.type))
    bits = np.packbits(valid, bitorder="little")
    if array.null_count:
        bits &= np.packbits(array.is_valid().to_numpy(zero_copy_only=False), bitorder="little")
    buffers = array.buffers()
    buffers[0] = pa.py_buffer(bits.tobytes())
    return pa.Array.from_buffers(array.type, len(array), buffers, null_count=-1)


def _time_offsets(
    event: Int64s, vis: Int64s, times: Int64s, placeable: Bools, cardinality: int
) -> tuple[Int64s, Int64s, Int64s, int]:
    """Times as offsets in ``[0, span)`` so that ``code * span + offset`` sorts by (key, time).

    View times map to ``1..span-1``; an entity time maps to the same scale, clamped, with 0 meaning
    "before every view time" (clamping changes no comparison). When microseconds would overflow the
    combined key, times are replaced by their rank among the distinct view times (same comparisons).
    """
    low = int(event[placeable].min()) if placeable.any() else 0
    high = int(vis[placeable].max()) if placeable.any() else 0
    span = high - low + 2
    if cardinality * span < KEY_LIMIT:
        entity_off = np.clip(times - low + 1, 0, high - low + 1)
        return event - low + 1, vis - low + 1, entity_off, span
    distinct = np.unique(np.concatenate([event[placeable], vis[placeable]]))
    rank = np.searchsorted(distinct, times, side="right")  # how many distinct view times are <= t
    span = len(distinct) + 1
    if cardinality * span >= KEY_LIMIT:
        raise ValueError("too many keys and distinct times for the sorted-search engine; use DuckDB")
    return np.searchsorted(distinct, event) + 1, np.searchsorted(distinct, vis) + 1, rank, span


def _nulls(features: pa.Table, n: int) -> pa.Table:
    return pa.table({f.name: pa.nulls(n, f.type) for f in features.schema})
