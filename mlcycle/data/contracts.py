"""Check rows against a dataset contract, vectorised with pandas.

Every row ends up either good or bad; each bad row carries every rule it broke. Values are parsed from
text (what a CSV holds) into the contract's types, so a value that does not parse is a ``type`` violation
rather than a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from mlcycle.config import ColumnSpec, DatasetContract

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}
#: A reader puts the raw text of a record it could not parse (e.g. a broken JSON line) in this column;
#: the record is then bad under the ``parse`` rule instead of failing the whole upload.
PARSE_ERROR = "_parse_error"


@dataclass
class Violation:
    row: int
    column: str
    rule: str
    value: str
    #: The file's line (1-based, header = line 1) where the reader knows it: CSV uploads.
    line: int | None = None
    reason: str | None = None


@dataclass
class CheckResult:
    """Rows split by the contract. ``good`` is typed; ``bad`` keeps the raw text of each rejected row."""

    good: pd.DataFrame
    bad: pd.DataFrame
    violations: list[Violation] = field(default_factory=list)


class ContractError(ValueError):
    """The upload as a whole cannot be checked (e.g. a required column is missing)."""


_FILTER_BITS = 1 << 27
_SLOT_SHIFT = np.uint64(64 - 27)


class KeyIndex:
    """The keys an upload has shown so far, as sorted 64-bit hashes.

    Eight bytes a key keep the uniqueness check of a 10M-row upload at ~80 MB instead of the ~1 GB a set
    of strings takes. Two distinct keys collide with odds ~n^2/2^65 (3e-6 for 10M keys); a collision
    quarantines a good row as ``unique``, it never lets a duplicate through.
    """

    def __init__(self) -> None:
        # Sorted runs, each at least twice the next one's size (a binary counter of merges): adding
        # costs O(log n) amortised per key, where merging every batch into one array costs O(n).
        self._runs: list[np.ndarray] = []
        # One bit per hash's top 27 bits (16 MiB): a key whose bit is clear was never added, so only the
        # few whose bit is set (about n / 2^27 of them) are searched in the runs. The top bits keep
        # sorted hashes' slots sorted, which lets adding set the bits without a scatter (see add_sorted).
        self._bits = np.zeros(_FILTER_BITS >> 3, dtype=np.uint8)

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    @staticmethod
    def hashes(keys: pd.Series) -> np.ndarray:
        return KeyIndex.hash_text(keys.astype("string").fillna("").to_numpy(dtype=object))

    @staticmethod
    def hash_text(keys: np.ndarray) -> np.ndarray:
        """Hashes of an object array of strings (keys are mostly distinct: no categorising first)."""
        return pd.util.hash_array(keys, categorize=False)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        # Sorted needles walk the index in order: far fewer cache misses than random ones.
        order = np.argsort(hashes)
        found = np.empty(len(hashes), dtype=bool)
        found[order] = self.contains_sorted(hashes[order])
        return found

    def contains_sorted(self, hashes: np.ndarray) -> np.ndarray:
        """``contains`` for needles already in ascending order."""
        found = np.zeros(len(hashes), dtype=bool)
        if not self._runs:
            return found
        slot = hashes >> _SLOT_SHIFT
        maybe = np.flatnonzero(
            (self._bits[slot >> np.uint64(3)] >> (slot & np.uint64(7)).astype(np.uint8)) & 1
        )
        needles = hashes[maybe]
        hit = np.zeros(len(needles), dtype=bool)
        for run in self._runs:
            at = np.searchsorted(run, needles).clip(max=len(run) - 1)
            hit |= run[at] == needles
        found[maybe] = hit
        return found

    def add_sorted(self, new: np.ndarray) -> None:
        """Add hashes in ascending order, none repeated nor already present."""
        slot = new >> _SLOT_SHIFT  # ascending, as ``new`` is: equal bytes are neighbours
        byte = slot >> np.uint64(3)
        bit = np.left_shift(1, slot & np.uint64(7)).astype(np.uint8)
        if len(byte):
            first = np.flatnonzero(np.concatenate(([True], byte[1:] != byte[:-1])))
            self._bits[byte[first]] |= np.bitwise_or.reduceat(bit, first)
        run = new
        while self._runs and len(self._runs[-1]) <= 2 * len(run):
            last = self._runs.pop()
            run = np.insert(last, np.searchsorted(last, run), run)
        if len(run):
            self._runs.append(run)

    def add(self, hashes: np.ndarray) -> None:
        new = np.unique(hashes)
        self.add_sorted(new[~self.contains_sorted(new)])


def check(
    raw: pd.DataFrame,
    contract: DatasetContract,
    *,
    first_row: int = 0,
    seen_keys: set[str] | KeyIndex | None = None,
    now: datetime | None = None,
    rows: np.ndarray | None = None,
) -> CheckResult:
    """Split ``raw`` (all values as text or native types) into good and bad rows.

    ``first_row`` numbers rows across chunks so reports point at the row of the uploaded file;
    ``seen_keys`` carries the keys of earlier chunks so uniqueness holds across the whole upload;
    ``now`` is the time freshness is judged at (rows older than the contract's ``max_age_days``);
    ``rows``, when given, numbers the rows instead of ``first_row`` (a reader that set lines aside).
    """
    missing = [c.name for c in contract.columns if c.name not in raw.columns]
    if missing:
        raise ContractError(f"missing columns: {', '.join(missing)}")
    rows_index = pd.Index(rows) if rows is not None else pd.RangeIndex(first_row, first_row + len(raw))
    raw = raw.set_axis(rows_index)
    typed: dict[str, pd.Series] = {}
    # A record the reader could not parse is reported once, under `parse`, not once per empty field.
    unparsed = (
        ~_is_null(raw[PARSE_ERROR]) if PARSE_ERROR in raw.columns else pd.Series(False, index=rows_index)
    )
    bad_mask = unparsed.copy()
    violations: list[Violation] = []
    for spec in contract.columns:
        values, column_bad = _check_column(raw[spec.name], spec)
        typed[spec.name] = values
        for rule, found in column_bad.items():
            mask = found & ~unparsed
            violations.extend(_violations(raw[spec.name], mask, spec.name, rule))
            bad_mask |= mask
    for column, rule, mask in _row_rules(raw, typed, contract, now):
        violations.extend(_violations(raw[column], mask, column, rule))
        bad_mask |= mask
    if contract.key is not None:
        dup = _duplicates(raw[contract.key], bad_mask, seen_keys) & ~unparsed
        violations.extend(_violations(raw[contract.key], dup, contract.key, "unique"))
        bad_mask |= dup
    good = pd.DataFrame(typed, index=rows_index)[~bad_mask].reset_index(drop=True)
    violations.sort(key=lambda v: (v.row, v.column))
    return CheckResult(good=good, bad=raw[bad_mask], violations=violations)


def _row_rules(
    raw: pd.DataFrame, typed: dict[str, pd.Series], contract: DatasetContract, now: datetime | None
) -> list[tuple[str, str, pd.Series]]:
    """Rules on whole rows: a record the reader could not parse, an event time older than allowed."""
    found: list[tuple[str, str, pd.Series]] = []
    if PARSE_ERROR in raw.columns:
        found.append((PARSE_ERROR, "parse", ~_is_null(raw[PARSE_ERROR])))  # already in the bad mask
    if contract.max_age_days is not None and contract.event_time is not None:
        at = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
        oldest = (at if at.tzinfo is not None else at.tz_localize("UTC")) - timedelta(
            days=contract.max_age_days
        )
        stamps = typed[contract.event_time]
        found.append((contract.event_time, "freshness", (stamps < oldest).fillna(False).astype(bool)))
    return found


def _duplicates(keys: pd.Series, bad_mask: pd.Series, seen_keys: set[str] | KeyIndex | None) -> pd.Series:
    """Rows whose key appeared earlier in the chunk or in an earlier chunk (only good rows claim a key)."""
    text = keys.astype("string")
    dup = text.duplicated(keep="first") & text.notna()
    if isinstance(seen_keys, KeyIndex):
        hashes = KeyIndex.hashes(text)
        dup |= pd.Series(seen_keys.contains(hashes), index=keys.index)
        seen_keys.add(hashes[(~dup & ~bad_mask & text.notna()).to_numpy()])
    elif seen_keys is not None:
        dup |= text.isin(seen_keys)
        seen_keys.update(text[~dup & ~bad_mask].dropna().tolist())
    return dup


def _violations(values: pd.Series, mask: pd.Series, column: str, rule: str) -> list[Violation]:
    hits = values[mask]
    return [Violation(int(str(i)), column, rule, "" if pd.isna(v) else str(v)) for i, v in hits.items()]


def _is_null(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return values.isna() | (text == "")


def _check_column(values: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, dict[str, pd.Series]]:
    null = _is_null(values)
    parsed = _parse(values.where(~null), spec)
    problems: dict[str, pd.Series] = {"type": parsed.isna() & ~null}
    if not spec.nullable:
        problems["not_null"] = null
    if spec.min is not None or spec.max is not None:
        numeric = pd.to_numeric(parsed, errors="coerce").astype("float64")  # NaN compares False
        out = pd.Series(False, index=values.index)
        if spec.min is not None:
            out |= numeric < spec.min
        if spec.max is not None:
            out |= numeric > spec.max
        problems["range"] = out
    if spec.categories is not None:
        problems["category"] = ~parsed.isin(spec.categories) & parsed.notna()
    return parsed, problems


def _parse(values: pd.Series, spec: ColumnSpec) -> pd.Series:
    if spec.type == "string":
        return values.astype("string").str.strip()
    if spec.type == "float":
        return pd.to_numeric(values, errors="coerce").astype("Float64")
    if spec.type == "int":
        numbers = pd.to_numeric(values, errors="coerce")
        whole = numbers.notna() & (numbers == np.floor(numbers.fillna(0)))
        return numbers.where(whole).astype("Int64")
    if spec.type == "bool":
        text = values.astype("string").str.strip().str.lower()
        return text.map(lambda t: True if t in _TRUE else False if t in _FALSE else pd.NA).astype("boolean")
    return pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
