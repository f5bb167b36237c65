"""Entity keys as dense integer codes in sorted key order, shared by the search engine and the snapshots.

A code is a key tuple's rank among the distinct tuples sorted ascending (Arrow's order: bytewise for
strings). Two sides numbered this way map onto each other monotonically, which is what lets the engine
search the needles of every view in one sorted order. Null keys get no code (-1): as ``NULL = x`` in SQL,
they match nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Int64s = npt.NDArray[np.int64]
_ROW = "__row"
_CODE = "__code"


def sorted_distinct(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """The distinct non-null key tuples of ``table``, sorted ascending; row ``i`` has code ``i``."""
    if len(keys) == 1:
        (key,) = keys
        values = pc.drop_null(pc.unique(table[key].combine_chunks()))
        return pa.table({key: values.take(pc.sort_indices(values))})
    present = table.select(list(keys)).drop_null()
    distinct = present.group_by(list(keys), use_threads=False).aggregate([])
    return distinct.select(list(keys)).sort_by([(k, "ascending") for k in keys])


def encode(table: pa.Table, keys: Sequence[str]) -> tuple[pa.Table, Int64s]:
    """``sorted_distinct(table, keys)`` and ``codes(table, it)`` together; one hash pass for one key."""
    if len(keys) != 1:
        distinct = sorted_distinct(table, keys)
        return distinct, codes(table, distinct)
    (key,) = keys
    encoded = pc.dictionary_encode(table[key].combine_chunks())
    order = np.asarray(pc.sort_indices(encoded.dictionary), np.int64)
    rank = np.empty(len(order) + 1, np.int64)
    rank[order] = np.arange(len(order))
    rank[-1] = -1  # where the index is null: a null key has no code
    indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    return pa.table({key: encoded.dictionary.take(pa.array(order))}), rank[indices]


def codes(table: pa.Table, dictionary: pa.Table) -> Int64s:
    """Each row's code in ``dictionary`` (see :func:`sorted_distinct`); -1 where it has none.

    The dictionary is cast to the row's key types first, as SQL casts one side of ``a = b``.
    """
    keys = dictionary.column_names
    if table.num_rows == 0:
        return np.zeros(0, np.int64)
    if len(keys) == 1:
        (key,) = keys
        values = table[key].combine_chunks()
        value_set = dictionary[key].combine_chunks()
        if value_set.type != values.type:
            value_set = value_set.cast(values.type)
        found = pc.index_in(values, value_set=value_set, skip_nulls=True)
        return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), np.int64)
    # Several keys: a hash join of the rows (numbered) with the numbered dictionary.
    schema = table.select(list(keys)).schema
    numbered = dictionary.cast(schema).append_column(_CODE, pa.array(np.arange(dictionary.num_rows)))
    left = table.select(list(keys)).append_column(_ROW, pa.array(np.arange(table.num_rows)))
    joined = left.join(numbered, list(keys), join_type="inner", use_threads=False)
    out = np.full(table.num_rows, -1, np.int64)
    out[joined[_ROW].to_numpy()] = joined[_CODE].to_numpy()
    return out
