"""The embedded point-in-time engine: sorted arrays and binary search (NumPy), no SQL.

It answers the same :class:`~mlcycle.features.sql.PointInTimeQuery` as the SQL builder, with the same rule
(see :mod:`mlcycle.features.sql`): per entity row and view, the greatest visible row in the total order
``(event_ts, created_ts, ingested_at)`` among rows of the same keys visible at the row's time (from
``event_ts``, or from ``greatest(event_ts, created_ts)`` with the leakage guard), kept only if its event
time is within the TTL; otherwise nulls. Entity rows keep their order and duplicates.

Why it is faster than the SQL join: every view row gets one int64 search key ``key_code * span +
time_offset``, so "same key, time at or before t" becomes one ``searchsorted`` of the entity rows into
the view's sorted keys; no join, no dedup, no sort back to entity order (winners are scattered into place).
The entity rows are sorted once by (key, time) for all views with the same keys, because a binary search
of sorted needles is several times faster than of random ones (NumPy starts each from the last result).
The leakage guard only changes which array is searched (see :func:`_searched`).
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

from mlcycle.config import FeatureViewSpec
from mlcycle.features.sql import INGESTED_AT, PointInTimeQuery, ViewSource

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

#: The largest value a combined search key may reach (headroom below 2**63 for the small offsets).
_KEY_LIMIT = 2**62
#: Stands for a null created / ingested time in the ordering: SQL's ``ORDER BY ... ASC`` puts nulls last
#: in both dialects, so a null sorts as the greatest value.
_NULL_LAST = np.iinfo(np.int64).max
_MICROS = 1_000_000


@dataclass(frozen=True)
class SortedSearchEngine:
    """Point-in-time joins over Arrow tables in this process; the default engine of ``FeatureStore``.

    ``threads``: views joined at once (default: one per view, up to the CPU count). NumPy's sorts and
    searches and Arrow's kernels release the GIL, so views proceed in parallel on threads, as a polars or
    DuckDB join would use every core.
    """

    threads: int | None = None

    def run(self, query: PointInTimeQuery, inputs: Mapping[str, pa.Table]) -> pa.Table:
        """The entity table's ``query.entity_columns`` (in row order), then every view's outputs."""
        entity = inputs[query.entity_table]
        times, timeless = _micros(entity[query.timestamp_column], fill=0)
        # One entity index per distinct key tuple, built before the views fan out.
        indexes = {
            keys: _EntityIndex.build(keys, entity, times, timeless)
            for keys in dict.fromkeys(v.spec.entity_keys for v in query.views)
        }

        def join(view: ViewSource) -> pa.Table:
            rows = inputs[view.table]
            features = rows.select([f for f, _ in view.outputs])
            if rows.num_rows == 0:
                return _nulls(features, entity.num_rows)
            indices = _winners(view, rows, indexes[view.spec.entity_keys], query.leakage_guard)
            # Null indices give null values: the entity rows without a visible row in TTL.
            return features.take(indices)

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
    """The entity rows' key tuples numbered densely, and the rows sorted by (code, time).

    View rows are looked up in the same numbering (:meth:`lookup`), so equal keys get equal codes and a
    view row whose keys no entity row has gets none (-1): it can never be picked, and is dropped early.
    """

    keys: tuple[str, ...]
    #: Per key column: the distinct entity values, and (after the first column) the sorted combined codes
    #: that renumber (codes so far, this column's index) densely.
    dictionaries: tuple[pa.Array, ...]
    renumbering: tuple[Int64s, ...]
    cardinality: int
    #: Entity row numbers sorted by (code, time); and code, time, "matches nothing" in that order.
    order: Int64s
    codes: Int64s
    times: Int64s
    unknown: Bools

    @classmethod
    def build(cls, keys: tuple[str, ...], entity: pa.Table, times: Int64s, timeless: Bools) -> _EntityIndex:
        codes = np.zeros(entity.num_rows, np.int64)
        nulls = timeless.copy()  # a row with a null key (or time) matches nothing, as NULL = x in SQL
        dictionaries: list[pa.Array] = []
        renumbering: list[Int64s] = []
        cardinality = 1
        for i, key in enumerate(keys):
            encoded = pc.dictionary_encode(entity[key].combine_chunks())
            nulls |= encoded.indices.is_null().to_numpy(zero_copy_only=False)
            part = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            size = max(len(encoded.dictionary), 1)
            dictionaries.append(encoded.dictionary)
            if i == 0:
                codes, cardinality = part, size
                continue
            # Both factors are at most the number of entity rows, so the product fits in int64.
            distinct, inverse = np.unique(codes * size + part, return_inverse=True)
            renumbering.append(distinct)
            codes, cardinality = inverse.reshape(-1).astype(np.int64), len(distinct)
        codes = np.where(nulls, -1, codes)
        order = _sort_by_code_and_time(codes, times, cardinality)
        return cls(
            keys,
            tuple(dictionaries),
            tuple(renumbering),
            cardinality,
            order,
            codes[order],
            times[order],
            nulls[order],
        )

    def lookup(self, rows: pa.Table) -> Int64s:
        """The code of each view row's key tuple; -1 where no entity row has it (or a key is null)."""
        codes = np.zeros(rows.num_rows, np.int64)
        missing = np.zeros(rows.num_rows, np.bool_)
        for i, (key, dictionary) in enumerate(zip(self.keys, self.dictionaries, strict=True)):
            values = rows[key].combine_chunks()
            # Compare in the view's type (the entity's distinct values cast to it), as SQL would cast.
            value_set = dictionary if dictionary.type == values.type else dictionary.cast(values.type)
            found = pc.index_in(values, value_set=value_set)
            missing |= found.is_null().to_numpy(zero_copy_only=False)
            part = pc.fill_null(found, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            if i == 0:
                codes = part
                continue
            distinct = self.renumbering[i - 1]
            combined = codes * max(len(dictionary), 1) + part  # the radix build() used
            codes = np.minimum(np.searchsorted(distinct, combined), len(distinct) - 1)
            missing |= distinct[codes] != combined
        return np.where(missing, -1, codes)


def _sort_by_code_and_time(codes: Int64s, times: Int64s, cardinality: int) -> Int64s:
    """Row numbers sorted by (code, time): one int64 argsort when the combined key fits, else a lexsort."""
    if len(times) == 0:
        return np.zeros(0, np.int64)
    low = int(times.min())
    span = int(times.max()) - low + 1
    if (cardinality + 1) * span < _KEY_LIMIT:
        return np.argsort((codes + 1) * span + (times - low)).astype(np.int64)
    return np.lexsort((times, codes)).astype(np.int64)


def _winners(view: ViewSource, rows: pa.Table, entity: _EntityIndex, leakage_guard: bool) -> pa.Array:
    """Per entity row, the index into ``rows`` of its winning view row (null when none applies)."""
    spec = view.spec
    event, no_event = _micros(rows[spec.event_timestamp], fill=0)
    guarded = leakage_guard and spec.created_timestamp is not None
    vis = event
    if guarded:
        assert spec.created_timestamp is not None
        created, no_created = _micros(rows[spec.created_timestamp], fill=_NULL_LAST)
        # greatest(event, created) as DuckDB computes it: a null created does not delay visibility.
        vis = np.where(no_created, event, np.maximum(event, created))

    view_codes = entity.lookup(rows)
    # A view row without event time or known keys can never be picked (SQL: null comparisons, no match).
    placeable = ~no_event & (view_codes >= 0)
    everywhere = bool(placeable.all())  # the usual case: skip the masking passes
    event_off, vis_off, entity_off, span = _time_offsets(
        event, vis, entity.times, placeable, entity.cardinality
    )
    base = view_codes * span
    order_key = base + event_off if everywhere else np.where(placeable, base + event_off, -1)
    # Rows in the order (keys, event, created, ingested). An argsort of one int64 key is much cheaper
    # than a lexsort; the tie-breaking columns are only read where (keys, event) repeats.
    order = np.argsort(order_key)
    sorted_key = order_key[order]
    if bool(np.any(sorted_key[1:] == sorted_key[:-1])):  # ties: stable, so full ties go by input order
        order = np.lexsort((*reversed(_tiebreaks(spec, rows)), order_key))
        sorted_key = order_key[order]
    start = 0 if everywhere else int(np.searchsorted(sorted_key, 0))  # unplaceable rows (-1) sort first
    order, sorted_key = order[start:], sorted_key[start:]
    if len(order) == 0:
        return pa.nulls(len(entity.order), pa.int64())
    search, best = _searched(guarded, sorted_key, (base + vis_off)[order] if guarded else sorted_key)

    # The entity rows in (code, time) order: sorted needles, so the binary searches are cheap.
    found = np.searchsorted(search, entity.codes * span + entity_off, side="right") - 1
    safe = np.maximum(found, 0)
    # A hit is a row of the same key at or before the time: that key's block starts at code * span.
    hit = (found >= 0) & (search[safe] >= entity.codes * span) & ~entity.unknown
    winner = order[best[safe]] if best is not None else order[safe]
    if spec.ttl_seconds is not None:
        # The winner is the newest visible row: if it has expired, every visible row has.
        hit &= event[winner] >= entity.times - spec.ttl_seconds * _MICROS
    # Back to entity row order: scatter instead of sorting back.
    indices = np.empty_like(winner)
    indices[entity.order] = winner
    hits = np.empty_like(hit)
    hits[entity.order] = hit
    return pa.array(indices, pa.int64(), mask=~hits)


def _tiebreaks(spec: FeatureViewSpec, rows: pa.Table) -> list[Int64s]:
    """The order's columns after the event time, as sort keys with nulls last (created, ingested)."""
    columns = [c for c in (spec.created_timestamp, INGESTED_AT) if c and c in rows.column_names]
    return [_micros(rows[c], fill=_NULL_LAST)[0] for c in columns]


def _searched(guarded: bool, order_key: Int64s, vis_key: Int64s) -> tuple[Int64s, Int64s | None]:
    """The sorted array to search, and (guarded) the order position each of its entries stands for.

    Unguarded, a row is visible from its event time, so the ordering array itself is searched: the last
    entry at or before ``(key, t)`` is the greatest visible row. Guarded, visibility (``vis``) and ordering
    differ: the rows are sorted by ``(key, vis)`` and carry the running maximum of their order position,
    i.e. the best row visible so far (the ``__best`` of the SQL). One global running maximum suffices:
    positions grow with the key code, so an earlier key's positions never exceed the current key's.
    Equal ``vis`` are handled by searching ``side="right"``: the last of them carries them all.
    """
    if not guarded:
        return order_key, None
    by_vis = np.argsort(vis_key)  # the order among equal vis does not matter: the last carries them all
    return vis_key[by_vis], np.maximum.accumulate(by_vis)


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
    if cardinality * span < _KEY_LIMIT:
        entity_off = np.clip(times - low + 1, 0, high - low + 1)
        return event - low + 1, vis - low + 1, entity_off, span
    distinct = np.unique(np.concatenate([event[placeable], vis[placeable]]))
    rank = np.searchsorted(distinct, times, side="right")  # how many distinct view times are <= t
    span = len(distinct) + 1
    if cardinality * span >= _KEY_LIMIT:
        raise ValueError("too many keys and distinct times for the sorted-search engine; use DuckDB")
    return np.searchsorted(distinct, event) + 1, np.searchsorted(distinct, vis) + 1, rank, span


def _micros(column: pa.ChunkedArray, fill: int) -> tuple[Int64s, Bools]:
    """Microseconds since the epoch as int64 (nulls replaced by ``fill``), and the null mask."""
    array = column.combine_chunks()
    if pa.types.is_timestamp(array.type) and array.type.unit != "us":
        # Same instant in microseconds (the store's unit); finer units truncate, as DuckDB's TIMESTAMP does.
        array = pc.cast(array, pa.timestamp("us", array.type.tz), safe=False)
    values = array.cast(pa.int64())
    mask = values.is_null().to_numpy(zero_copy_only=False)
    return pc.fill_null(values, fill).to_numpy(zero_copy_only=False).astype(np.int64), mask


def _nulls(features: pa.Table, n: int) -> pa.Table:
    return pa.table({f.name: pa.nulls(n, f.type) for f in features.schema})
