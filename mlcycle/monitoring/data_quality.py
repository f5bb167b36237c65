"""Data quality of a window: what the served rows break, against the data contract and the baseline.

Per feature: the missing rate above the baseline's by more than the tolerance; type errors (a value that
is not a number where the contract wants one); values outside the contract's range; categories neither
the contract nor the baseline knows. Counts come from the drift comparison's sides (one pass over the
data) and the contract, so a window is read once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from mlcycle.config import DatasetContract, MonitoringSettings
from mlcycle.monitoring.drift import DriftReport

#: Unseen categories are a violation above this share of a window's rows (one odd value is not).
UNSEEN_SHARE_LIMIT = 0.01


@dataclass
class FeatureQuality:
    feature: str
    missing_rate: float
    baseline_missing_rate: float
    type_error_rate: float = 0.0
    out_of_range_rate: float = 0.0
    unseen_rate: float = 0.0
    unseen_values: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


@dataclass
class DataQualityResult:
    status: str  # "ok" | "insufficient_data"
    violated: bool | None
    rows: int
    features: list[FeatureQuality]

    def worst(self, limit: int = 5) -> list[dict[str, Any]]:
        broken = [f for f in self.features if f.violations]
        broken.sort(
            key=lambda f: -max(f.missing_rate - f.baseline_missing_rate, f.type_error_rate, f.unseen_rate)
        )
        return [{"feature": f.feature, "violations": f.violations} for f in broken[:limit]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(
    frame: pd.DataFrame,
    report: DriftReport,
    contract: DatasetContract,
    features: Sequence[str],
    monitoring: MonitoringSettings,
) -> DataQualityResult:
    """The window's data quality; ``insufficient_data`` below ``monitoring.min_rows`` rows."""
    results = [_feature(frame[name], report, contract, name, monitoring) for name in features]
    if len(frame) < monitoring.min_rows:
        return DataQualityResult("insufficient_data", None, len(frame), results)
    return DataQualityResult("ok", any(r.violations for r in results), len(frame), results)


def _feature(
    values: pd.Series,
    report: DriftReport,
    contract: DatasetContract,
    name: str,
    monitoring: MonitoringSettings,
) -> FeatureQuality:
    drift = report.column(name)
    invalid = drift.current_invalid_share
    result = FeatureQuality(
        name,
        missing_rate=max(drift.current_missing_share - invalid, 0.0),
        baseline_missing_rate=drift.reference_missing_share,
        type_error_rate=invalid,
    )
    spec = contract.column(name) if name in {c.name for c in contract.columns} else None
    if result.missing_rate > result.baseline_missing_rate + monitoring.missing_rate_tolerance:
        result.violations.append(
            f"missing rate {result.missing_rate:.1%} (baseline {result.baseline_missing_rate:.1%})"
        )
    if invalid > 0:
        result.violations.append(f"{invalid:.1%} of values are not numbers")
    if spec is not None and drift.kind == "numeric" and (spec.min is not None or spec.max is not None):
        result.out_of_range_rate = _out_of_range(values, spec.min, spec.max)
        if result.out_of_range_rate > 0:
            result.violations.append(
                f"{result.out_of_range_rate:.1%} of values outside [{spec.min}, {spec.max}]"
            )
    if drift.kind == "categorical":
        known = set(spec.categories) if spec is not None and spec.categories else None
        unseen = [v for v in drift.unseen_categories if known is None or v not in known]
        result.unseen_values = unseen[:10]
        result.unseen_rate = drift.unseen_share if unseen else 0.0
        if result.unseen_rate > UNSEEN_SHARE_LIMIT:
            result.violations.append(
                f"{result.unseen_rate:.1%} of values are unseen categories: {unseen[:5]}"
            )
    return result


def _out_of_range(values: pd.Series, low: float | None, high: float | None) -> float:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty:
        return 0.0
    outside = pd.Series(False, index=numbers.index)
    if low is not None:
        outside |= numbers < low
    if high is not None:
        outside |= numbers > high
    return float(outside.mean())
