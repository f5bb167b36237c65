"""SageMaker Model Monitor's files, written from a drift report, so that teams keep their files and tools.

- ``statistics.json``: item count and per-feature statistics of one side (``numerical_statistics`` with
  10 equal-width buckets and a quantile sketch in the KLL slot, or ``string_statistics`` with category
  counts), as the prebuilt container writes them for a baseline or a monitoring window.
- ``constraints.json``: what the baseline suggests (completeness, non-negativity, the domain of small
  categoricals) and the ``monitoring_config`` thresholds.
- ``constraint_violations.json``: one record per broken check (``feature_name``,
  ``constraint_check_type``, ``description``), with the check types Model Monitor uses.

Model Monitor's KLL sketch is a compacted multi-level sample; ours is a single level of ``k`` evenly spaced
order statistics of the sorted column, which readers of the format treat the same way (a sorted sample
that estimates quantiles). The drift check is ours (the column's test and threshold), described in the
violation's text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from mlcycle.monitoring.drift import ColumnDrift, DriftOptions, DriftReport
from mlcycle.monitoring.profile import SKETCH_POINTS, Summary

Side = Literal["reference", "current"]
DATATYPE_CHECK_THRESHOLD = 0.1  # Model Monitor's defaults
DOMAIN_CONTENT_THRESHOLD = 0.1
DOMAIN_MAX_VALUES = 20  # categoricals with at most this many values get a domain constraint
KLL_C = 0.64  # Model Monitor's sketch parameter c; k is the number of points we keep


def _summary(column: ColumnDrift, side: Side) -> Summary:
    summary = column.reference_summary if side == "reference" else column.current_summary
    if summary is None:
        raise ValueError(f"the report carries no {side} summary of {column.column!r}")
    return summary


def _all_columns(report: DriftReport) -> list[ColumnDrift]:
    return [*report.columns, *([report.prediction] if report.prediction else [])]


def inferred_type(column: ColumnDrift, side: Side = "reference") -> str:
    if column.kind == "categorical":
        return "String"
    summary = _summary(column, side)
    if summary.minimum is None:
        return "Unknown"
    return "Integral" if summary.integral else "Fractional"


# --- statistics.json ---------------------------------------------------------------------------------


def statistics(report: DriftReport, side: Side = "current") -> dict[str, Any]:
    """``statistics.json`` of one side of the comparison (the baseline's, or the window's)."""
    rows = report.dataset.reference_rows if side == "reference" else report.dataset.current_rows
    return {
        "version": 0,
        "dataset": {"item_count": rows},
        "features": [_feature_statistics(column, side) for column in _all_columns(report)],
    }


def _feature_statistics(column: ColumnDrift, side: Side) -> dict[str, Any]:
    summary = _summary(column, side)
    common = {"num_present": summary.rows - summary.missing, "num_missing": summary.missing}
    if column.kind == "categorical":
        return {
            "name": column.column,
            "inferred_type": "String",
            "string_statistics": {
                "common": common,
                "distinct_count": float(summary.distinct or 0),
                "distribution": {
                    "categorical": {"buckets": [{"value": v, "count": c} for v, c in summary.categories]}
                },
            },
        }
    numbers: dict[str, Any] = {"common": common}
    if summary.minimum is not None:
        numbers |= {
            "mean": summary.mean,
            "sum": summary.total,
            "std_dev": summary.std,
            "min": summary.minimum,
            "max": summary.maximum,
            "distribution": {
                "kll": {
                    "buckets": [
                        {"lower_bound": low, "upper_bound": high, "count": float(count)}
                        for low, high, count in summary.buckets
                    ],
                    "sketch": {
                        "parameters": {"c": KLL_C, "k": float(SKETCH_POINTS)},
                        "data": [list(summary.sketch)],
                    },
                }
            },
        }
    return {
        "name": column.column,
        "inferred_type": inferred_type(column, side),
        "numerical_statistics": numbers,
    }


# --- constraints.json --------------------------------------------------------------------------------


def constraints(report: DriftReport, options: DriftOptions | None = None) -> dict[str, Any]:
    """``constraints.json`` suggested by the reference side (the baseline)."""
    options = options or DriftOptions()
    return {
        "version": 0,
        "features": [_feature_constraints(column) for column in _all_columns(report)],
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": DATATYPE_CHECK_THRESHOLD,
            "domain_content_threshold": DOMAIN_CONTENT_THRESHOLD,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": options.threshold("wasserstein"),
                "comparison_method": "Robust",
                "categorical_comparison_threshold": options.threshold("jensenshannon"),
                "categorical_drift_method": "LInfinity",
            },
        },
    }


def _feature_constraints(column: ColumnDrift) -> dict[str, Any]:
    summary = _summary(column, "reference")
    feature: dict[str, Any] = {
        "name": column.column,
        "inferred_type": inferred_type(column, "reference"),
        "completeness": 1.0 - column.reference_missing_share,
    }
    if column.kind == "numeric" and summary.minimum is not None:
        feature["num_constraints"] = {"is_non_negative": summary.minimum >= 0}
    if (
        column.kind == "categorical"
        and summary.distinct is not None
        and summary.distinct <= DOMAIN_MAX_VALUES
    ):
        feature["string_constraints"] = {"domains": [value for value, _ in summary.categories]}
    return feature


# --- constraint_violations.json ----------------------------------------------------------------------


def violations(report: DriftReport, current_columns: Iterable[str] | None = None) -> dict[str, Any]:
    """``constraint_violations.json`` of the window: drift, completeness, types, unseen values, and
    (given the window's column names) missing or extra columns."""
    records: list[dict[str, str]] = []
    columns = _all_columns(report)
    present = set(current_columns) if current_columns is not None else None
    for column in columns:
        if present is not None and column.column not in present:
            records.append(
                _violation(column.column, "missing_column_check", "The column is not in the data.")
            )
            continue
        records.extend(_column_violations(column))
    if present is not None:
        known = {column.column for column in columns}
        for name in sorted(present - known):
            records.append(_violation(name, "extra_column_check", "The column is not in the baseline."))
    return {"violations": records}


def _violation(feature: str, check: str, description: str) -> dict[str, str]:
    return {"feature_name": feature, "constraint_check_type": check, "description": description}


def _column_violations(column: ColumnDrift) -> list[dict[str, str]]:
    found = []
    if column.current_invalid_share > DATATYPE_CHECK_THRESHOLD:
        share = 100 * (1 - column.current_invalid_share)
        found.append(
            _violation(
                column.column,
                "data_type_check",
                f"Data type match requirement is not met. Expected data type: {inferred_type(column)}, "
                f"Expected match: 100.0%. Observed: Only {share:.1f}% of data is numeric.",
            )
        )
    if column.missing_surge:
        found.append(
            _violation(
                column.column,
                "completeness_check",
                "Data completeness requirement is not met. Expected completeness: "
                f"{100 * (1 - column.reference_missing_share):.1f}%. Observed completeness: "
                f"{100 * (1 - column.current_missing_share):.1f}%.",
            )
        )
    if column.unseen_share > DOMAIN_CONTENT_THRESHOLD:
        found.append(
            _violation(
                column.column,
                "categorical_values_check",
                f"{100 * column.unseen_share:.1f}% of values are outside the baseline's domain "
                f"(threshold {100 * DOMAIN_CONTENT_THRESHOLD:.0f}%): "
                f"{', '.join(column.unseen_categories[:5])}.",
            )
        )
    if column.drifted and column.test not in ("missing", "none"):
        found.append(_violation(column.column, "baseline_drift_check", _drift_description(column)))
    return found


def _drift_description(column: ColumnDrift) -> str:
    if column.test == "presence":
        return "Values appeared where the baseline had none."
    if column.test in ("ks", "chisquare", "z"):
        return (
            f"Baseline drift p-value ({column.test}): {column.score:.4g} "
            f"is below threshold: {column.threshold:g}"
        )
    return (
        f"Baseline drift distance ({column.test}): {column.score:.4g} exceeds threshold: {column.threshold:g}"
    )
