"""Business KPIs over captured and labelled rows, per model version (settings ``monitoring.kpis``).

A KPI is ``aggregate`` of ``column`` over the rows that match ``where`` (a pandas query over the features,
``prediction`` and ``label``). Rows whose ``column`` is missing (an unlabelled row, for a KPI of the label)
do not count: ``rows`` says how many did. ``mean`` and ``sum`` need a numeric column; ``count`` counts the
rows; ``rate`` is the share of them where the column is truthy. No rows leave the value None and the
verdict ``breached`` None (nothing to judge), never NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.config import KpiSpec
from mlcycle.monitoring.outcomes import Joined

_FALSY_TEXT = frozenset({"", "0", "false", "no", "n", "f"})


class KpiError(ValueError):
    """A KPI that cannot be computed on these rows (bad query, unknown or non-numeric column)."""


@dataclass(frozen=True)
class KpiResult:
    name: str
    model_version: int | None
    value: float | None
    rows: int
    min: float | None
    max: float | None
    breached: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)


def evaluate(joined: Joined, specs: Sequence[KpiSpec]) -> list[KpiResult]:
    """One result per KPI and model version in the window (versions in ascending order)."""
    frame = joined.frame
    if "model_version" in frame.columns:
        groups = [(_version(v), part) for v, part in frame.groupby("model_version", sort=True, dropna=False)]
    else:
        groups = [(None, frame)]
    return [_one(spec, version, part) for spec in specs for version, part in groups]


def _version(value: object) -> int | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) else None


def _one(spec: KpiSpec, version: int | None, frame: pd.DataFrame) -> KpiResult:
    values = _values(spec, _matching(spec, frame))
    value = _aggregate(spec, values)
    if value is None:
        breached = None
    else:
        breached = (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max)
    return KpiResult(spec.name, version, value, len(values), spec.min, spec.max, breached)


def _matching(spec: KpiSpec, frame: pd.DataFrame) -> pd.DataFrame:
    if not spec.where:
        return frame
    try:
        # The python engine: the same answers with or without numexpr installed.
        return frame.query(spec.where, engine="python")
    except Exception as exc:  # pandas raises many kinds (SyntaxError, NameError, TypeError, ...)
        raise KpiError(
            f"KPI {spec.name!r}: its where {spec.where!r} fails on the captured rows: "
            f"{type(exc).__name__}: {exc} (columns: {list(frame.columns)})"
        ) from exc


def _values(spec: KpiSpec, frame: pd.DataFrame) -> pd.Series:
    if spec.column not in frame.columns:
        raise KpiError(f"KPI {spec.name!r}: no column {spec.column!r} (columns: {list(frame.columns)})")
    return frame[spec.column].dropna()


def _aggregate(spec: KpiSpec, values: pd.Series) -> float | None:
    if spec.aggregate == "count":
        return float(len(values))
    if not len(values):
        return None
    if spec.aggregate == "rate":
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            return float(np.mean(values.to_numpy() != 0))
        return float(np.mean([_truthy(v) for v in values]))
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any():
        bad = values[numbers.isna()].iloc[0]
        raise KpiError(f"KPI {spec.name!r}: {spec.aggregate} of {spec.column!r} needs numbers, got {bad!r}")
    total = float(numbers.sum()) if spec.aggregate == "sum" else float(numbers.mean())
    return total if math.isfinite(total) else None


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSY_TEXT
    return bool(value)
