"""Check rows against a dataset contract, vectorised with pandas.

Every row ends up either good or bad; each bad row carries every rule it broke. Values are parsed from
text (what a CSV holds) into the contract's types, so a value that does not parse is a ``type`` violation
rather than a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlcycle.config import ColumnSpec, DatasetContract

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


@dataclass
class Violation:
    row: int
    column: str
    rule: str
    value: str


@dataclass
class CheckResult:
    """Rows split by the contract. ``good`` is typed; ``bad`` keeps the raw text of each rejected row."""

    good: pd.DataFrame
    bad: pd.DataFrame
    violations: list[Violation] = field(default_factory=list)


class ContractError(ValueError):
    """The upload as a whole cannot be checked (e.g. a required column is missing)."""


def check(
    raw: pd.DataFrame,
    contract: DatasetContract,
    *,
    first_row: int = 0,
    seen_keys: set[str] | None = None,
) -> CheckResult:
    """Split ``raw`` (all values as text or native types) into good and bad rows.

    ``first_row`` numbers rows across chunks so reports point at the row of the uploaded file;
    ``seen_keys`` carries the keys of earlier chunks so uniqueness holds across the whole upload.
    """
    missing = [c.name for c in contract.columns if c.name not in raw.columns]
    if missing:
        raise ContractError(f"missing columns: {', '.join(missing)}")
    rows = pd.RangeIndex(first_row, first_row + len(raw))
    raw = raw.set_axis(rows)
    typed: dict[str, pd.Series] = {}
    bad_mask = pd.Series(False, index=rows)
    violations: list[Violation] = []
    for spec in contract.columns:
        values, column_bad = _check_column(raw[spec.name], spec)
        typed[spec.name] = values
        for rule, mask in column_bad.items():
            violations.extend(_violations(raw[spec.name], mask, spec.name, rule))
            bad_mask |= mask
    if contract.key is not None:
        keys = raw[contract.key].astype("string")
        dup = keys.duplicated(keep="first") & keys.notna()
        if seen_keys is not None:
            dup |= keys.isin(seen_keys)
            seen_keys.update(keys[~dup & ~bad_mask].dropna().tolist())
        violations.extend(_violations(raw[contract.key], dup, contract.key, "unique"))
        bad_mask |= dup
    good = pd.DataFrame(typed, index=rows)[~bad_mask].reset_index(drop=True)
    violations.sort(key=lambda v: (v.row, v.column))
    return CheckResult(good=good, bad=raw[bad_mask], violations=violations)


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
