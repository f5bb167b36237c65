"""The contract check on Arrow columns: the CSV path's fast form of :func:`mlcycle.data.contracts.check`.

Values arrive as Arrow text (what the CSV reader gives, ``""`` when empty) and are typed by Arrow's casts,
which parse a whole column in C++ or fail. A column whose cast fails (a value that is not a plain literal
of its type: ``"twelve"``, ``" 5"``, ``"1.0"`` for an int, a date in another format) is parsed by the
pandas rules of :mod:`mlcycle.data.contracts` for that batch only, so both paths accept and reject the
same values; a clean batch never leaves Arrow and NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.config import ColumnSpec, DatasetContract
from mlcycle.data.contracts import _FALSE, _TRUE, KeyIndex, Violation, _is_null, _parse

#: The curated Parquet types, as the pandas path writes them.
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.large_string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


@dataclass
class Prechecked:
    """A batch's checks that need no other batch (types, nulls, ranges, categories, freshness) and its
    keys' hashes in sorted order: what can run ahead of the key claims, on another thread."""

    table: pa.Table
    typed: dict[str, pa.Array]
    bad: np.ndarray
    found: list[tuple[str, str, np.ndarray]]
    keys: SortedKeys | None


@dataclass
class SortedKeys:
    column: str
    present: np.ndarray  # rows with a key (not missing, not empty)
    order: np.ndarray  # a stable argsort of the hashes
    ordered: np.ndarray  # the hashes in that order


def check_table(
    table: pa.Table,
    contract: DatasetContract,
    rows: np.ndarray,
    *,
    seen_keys: KeyIndex,
    now: datetime | None = None,
) -> tuple[pa.Table, np.ndarray, list[Violation]]:
    """(good rows typed, bad-row mask, violations) of a batch of text; ``rows`` numbers its rows."""
    return finish(precheck(table, contract, now=now), rows, seen_keys=seen_keys)


def precheck(table: pa.Table, contract: DatasetContract, *, now: datetime | None = None) -> Prechecked:
    """Everything of :func:`check_table` that does not depend on earlier batches."""
    typed: dict[str, pa.Array] = {}
    bad = np.zeros(table.num_rows, dtype=bool)
    found: list[tuple[str, str, np.ndarray]] = []
    for spec in contract.columns:
        values, problems = _column(table.column(spec.name).combine_chunks(), spec)
        typed[spec.name] = values
        for rule, mask in problems.items():
            if mask.any():
                found.append((spec.name, rule, mask))
                bad |= mask
    if contract.max_age_days is not None and contract.event_time is not None:
        at = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
        at = at if at.tzinfo is not None else at.tz_localize("UTC")
        oldest = pa.scalar(at - timedelta(days=contract.max_age_days), type=ARROW_TYPES["timestamp"])
        stale = _mask(pc.less(typed[contract.event_time], oldest))
        if stale.any():
            found.append((contract.event_time, "freshness", stale))
            bad |= stale
    key = contract.key
    keys = _sorted_keys(key, table.column(key).combine_chunks()) if key is not None else None
    return Prechecked(table, typed, bad, found, keys)


def finish(
    checked: Prechecked, rows: np.ndarray, *, seen_keys: KeyIndex
) -> tuple[pa.Table, np.ndarray, list[Violation]]:
    """The key claims (batches in file order: the first row with a key keeps it), then the verdict."""
    table, typed, bad, found = checked.table, checked.typed, checked.bad, list(checked.found)
    if checked.keys is not None:
        dup = _duplicates(checked.keys, bad, seen_keys)
        if dup.any():
            found.append((checked.keys.column, "unique", dup))
            bad = bad | dup
    violations = [
        Violation(int(rows[i]), column, rule, text)
        for column, rule, mask in found
        for i, text in zip(
            np.flatnonzero(mask), table.column(column).take(np.flatnonzero(mask)).to_pylist(), strict=True
        )
    ]
    violations.sort(key=lambda v: (v.row, v.column))
    good = pa.table(typed).filter(pa.array(~bad)) if bad.any() else pa.table(typed)
    return good, bad, violations


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _empty(text: pa.Array) -> np.ndarray:
    """Missing or empty text: what the contract calls null."""
    return np.asarray(pc.fill_null(pc.equal(text, ""), True).to_numpy(zero_copy_only=False), dtype=bool)


def _column(text: pa.Array, spec: ColumnSpec) -> tuple[pa.Array, dict[str, np.ndarray]]:
    target = ARROW_TYPES[spec.type]
    if spec.type == "string":
        values = pc.utf8_trim_whitespace(text)
        null = _empty(values)
        parsed = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), values).cast(target)
        type_bad = np.zeros(len(text), dtype=bool)
    else:
        null = _empty(text)
        parsed = _fast(text, null, spec, target)
        if parsed is None:  # some value is not a plain literal: the pandas rules for this batch
            series = text.to_pandas()
            null = _is_null(series).to_numpy(dtype=bool)
            parsed = pa.array(_parse(series.where(~null), spec), from_pandas=True).cast(target, safe=False)
        type_bad = ~null & ~_mask(pc.is_valid(parsed))
    problems = {"type": type_bad}
    if not spec.nullable:
        problems["not_null"] = null
    if (spec.min is not None or spec.max is not None) and spec.type in ("int", "float"):
        out = np.zeros(len(text), dtype=bool)
        if spec.min is not None:
            out |= _mask(pc.less(parsed, spec.min))
        if spec.max is not None:
            out |= _mask(pc.greater(parsed, spec.max))
        problems["range"] = out
    if spec.categories is not None:
        allowed = pc.is_in(
            parsed.cast(pa.large_string()), value_set=pa.array(spec.categories, pa.large_string())
        )
        problems["category"] = ~_mask(allowed) & _mask(pc.is_valid(parsed))
    return parsed, problems


def _fast(text: pa.Array, null: np.ndarray, spec: ColumnSpec, target: pa.DataType) -> pa.Array | None:
    """Arrow's cast of the whole column, or None when a value does not cast."""
    values = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text) if null.any() else text
    try:
        if spec.type == "bool":
            lowered = pc.utf8_lower(values)
            known = pc.is_in(lowered, value_set=pa.array(sorted(_TRUE | _FALSE)))
            if not _mask(pc.or_(known, pc.is_null(values))).all():
                return None
            truth = pc.is_in(lowered, value_set=pa.array(sorted(_TRUE)))
            return pc.if_else(pc.is_null(values), pa.scalar(None, pa.bool_()), truth)
        if spec.type == "timestamp":
            try:
                return pc.cast(values, target)
            except pa.ArrowInvalid:
                return pc.cast(pc.cast(values, pa.timestamp("us")), target)  # no zone offset: UTC
        parsed = pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if spec.type == "float" and _mask(pc.is_nan(parsed)).any():
        return None  # "nan" is no number to the contract: the pandas rules say so
    return parsed


def _sorted_keys(column: str, keys: pa.Array) -> SortedKeys:
    present = _mask(pc.is_valid(keys)) & ~_mask(pc.equal(keys, ""))
    hashes = hash_strings(keys)
    # One stable sort serves both checks: a repeat within the batch sits right after its first
    # occurrence, and sorted needles search the index of earlier batches in order.
    order = np.argsort(hashes, kind="stable")
    return SortedKeys(column, present, order, hashes[order])


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: every input bit flips about half the output bits."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


def hash_strings(keys: pa.Array) -> np.ndarray:
    """64-bit hashes of an Arrow string array, computed on its buffers (a missing value hashes as "").

    pandas' ``hash_array`` needs a Python object per value, which holds the GIL and costs three times
    as much; this runs in NumPy, so it overlaps the other thread's work (see check_csv). Each value is
    its length, then its bytes in 8-byte words, each folded in through SplitMix64's finaliser: equal
    text, equal hash; distinct keys collide as rarely as random 64-bit values (tested).
    """
    keys = keys.cast(pa.large_string()) if keys.type != pa.large_string() else keys
    n = len(keys)
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int64)[keys.offset : keys.offset + n + 1]
    data = keys.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    raw = raw[offsets[0] : offsets[-1]] if n else raw[:0]
    lengths = np.diff(offsets)
    if keys.null_count:  # a null's slot may hold bytes: it is "" here
        lengths = np.where(_mask(pc.is_null(keys)), 0, lengths)
    width = int(lengths.max()) if n else 0
    padded = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    if n and not keys.null_count and int(lengths.min()) == width:
        padded[:, :width] = raw.reshape(n, width)  # fixed-width keys (the usual ids): one copy
    elif n:
        starts = offsets[:-1] - offsets[0]
        rows = np.repeat(np.arange(n), lengths)
        columns = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        padded[rows, columns] = raw[np.repeat(starts, lengths) + columns]
    words = padded.view("<u8")
    hashes = _mix(lengths.astype(np.uint64) + _GOLDEN)
    covered = -(-lengths // 8)  # a value's own words: the padding of longer values is not part of it
    for j in range(words.shape[1]):
        hashes = np.where(covered > j, _mix(hashes ^ words[:, j]), hashes)
    return hashes


def _duplicates(keys: SortedKeys, bad: np.ndarray, seen: KeyIndex) -> np.ndarray:
    """Rows whose key appeared earlier in the batch or in an earlier batch (only good rows claim a key)."""
    order, ordered = keys.order, keys.ordered
    repeated = np.zeros(len(ordered), dtype=bool)
    repeated[1:] = ordered[1:] == ordered[:-1]
    dup = np.empty(len(ordered), dtype=bool)
    dup[order] = repeated | seen.contains_sorted(ordered)
    dup &= keys.present
    claims = ~dup & ~bad & keys.present
    seen.add_sorted(ordered[claims[order]])
    return dup
