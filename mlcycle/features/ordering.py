"""The point-in-time join's order of view rows, in NumPy: shared by the search engine and the snapshots.

The rule (see :mod:`mlcycle.features.sql`): among rows of the same keys, the greatest in the order
``(event_ts, created_ts, ingested_at)`` (nulls last, full ties by input order) that is visible at the
entity row's time wins; a row is visible from ``event_ts``, or with the leakage guard from
``greatest(event_ts, created_ts)``. Times are int64 microseconds since the epoch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.config import FeatureViewSpec
from mlcycle.features.sql import INGESTED_AT

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

#: The largest value a combined search key may reach (headroom below 2**63 for the small offsets).
KEY_LIMIT = 2**62
#: Stands for a null created / ingested time in the ordering: SQL's ``ORDER BY ... ASC`` puts nulls
#: last in both dialects, so a null sorts as the greatest value.
NULL_LAST = np.iinfo(np.int64).max


def micros_and_nulls(column: pa.ChunkedArray | pa.Array, fill: int) -> tuple[Int64s, Bools]:
    """Microseconds since the epoch as int64 (nulls replaced by ``fill``), and the null mask."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_timestamp(array.type) and array.type.unit != "us":
        # Same instant in microseconds (the store's unit); finer units truncate, as DuckDB's TIMESTAMP does.
        array = pc.cast(array, pa.timestamp("us", array.type.tz), safe=False)
    values = array.cast(pa.int64())
    mask = np.asarray(values.is_null().to_numpy(zero_copy_only=False), np.bool_)
    return np.asarray(pc.fill_null(values, fill).to_numpy(zero_copy_only=False), np.int64), mask


def visible_from(spec: FeatureViewSpec, rows: pa.Table, event: Int64s) -> Int64s:
    """When each row becomes visible under the leakage guard: ``greatest(event, created)`` as DuckDB
    computes it (a null created time does not delay visibility); ``event`` without a created column."""
    if spec.created_timestamp is None:
        return event
    created, no_created = micros_and_nulls(rows[spec.created_timestamp], fill=NULL_LAST)
    return np.where(no_created, event, np.maximum(event, created))


def join_order(spec: FeatureViewSpec, rows: pa.Table, *keys: Int64s) -> Int64s:
    """Row numbers sorted by ``keys`` (most significant first), then created and ingested time (nulls
    last); full ties keep input order. An argsort of one int64 key is much cheaper than a lexsort, so
    the tie-breaking columns are only read when that key repeats."""
    if len(keys) == 1:
        order = np.argsort(keys[0])
        ordered = keys[0][order]
        if not bool(np.any(ordered[1:] == ordered[:-1])):
            return np.asarray(order, np.int64)
    columns = [c for c in (spec.created_timestamp, INGESTED_AT) if c and c in rows.column_names]
    tiebreaks = [micros_and_nulls(rows[c], fill=NULL_LAST)[0] for c in columns]
    return np.asarray(np.lexsort((*reversed(tiebreaks), *reversed(keys))), np.int64)


def by_visibility(vis_key: Int64s) -> tuple[Int64s, Int64s]:
    """For guarded searches: ``vis_key`` (per position in join order) sorted, and per entry the best
    join-order position visible so far (the running maximum; the ``__best`` of the SQL).

    One global running maximum suffices: positions grow with the key code, so an earlier key's positions
    never exceed the current key's. The order among equal keys does not matter: searching
    ``side="right"`` lands on the last of them, which carries them all.
    """
    order = np.argsort(vis_key)
    return vis_key[order], np.maximum.accumulate(order)
