"""Model quality on labelled live traffic, against the model's registered test metrics.

Metrics in NumPy only (monitor Lambdas carry no scikit-learn), each equal to scikit-learn's: ``roc_auc``
(rank-based, ties averaged, as ``roc_auc_score``), ``accuracy``, ``precision``, ``recall``, ``f1`` (binary
on the positive class; macro over the classes seen otherwise, as ``modeling.evaluate`` registers ``f1``;
0.0 where a ratio has no denominator, scikit-learn's ``zero_division`` default) for classification, and
``rmse``, ``mae``, ``r2`` for regression. A metric that cannot be defined on the window (AUC with one
class) is ``None``, never NaN.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.config import MonitoringSettings, ProblemConfig
from mlcycle.monitoring.labels import classes, positive_label
from mlcycle.monitoring.outcomes import Joined

#: Metrics where a smaller value is the better one (as mlcycle.quality.post_training has them).
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
FloatArray = np.ndarray


@dataclass(frozen=True)
class QualityResult:
    rows: int
    labelled: int
    coverage: float
    primary_metric: str
    metrics: dict[str, float | None]
    registered: dict[str, float]
    #: How far the primary metric fell from its registered value (positive = worse); None when unknown.
    drop: float | None
    tolerance: float
    #: None: fewer labelled rows than ``min_labelled_rows``, or the primary metric is undefined here.
    degraded: bool | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)


def evaluate(
    joined: Joined, problem: ProblemConfig, registered: dict[str, float], monitoring: MonitoringSettings
) -> QualityResult:
    frame = joined.frame[joined.frame["label"].notna()]
    metrics = (
        regression_metrics(frame) if problem.task == "regression" else classification_metrics(frame, problem)
    )
    primary = problem.primary_metric
    reference = {k: float(v) for k, v in registered.items() if _finite(v)}
    drop = _drop(primary, metrics.get(primary), reference.get(primary))
    degraded, reason = _verdict(
        joined.labelled, monitoring, primary=primary, drop=drop, metrics=metrics, registered=reference
    )
    return QualityResult(
        rows=joined.rows,
        labelled=joined.labelled,
        coverage=float(joined.coverage),
        primary_metric=primary,
        metrics=metrics,
        registered=reference,
        drop=drop,
        tolerance=float(monitoring.quality_tolerance),
        degraded=degraded,
        reason=reason,
    )


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _drop(metric: str, current: float | None, registered: float | None) -> float | None:
    if current is None or registered is None:
        return None
    return current - registered if metric in LOWER_IS_BETTER else registered - current


def _verdict(
    labelled: int,
    monitoring: MonitoringSettings,
    *,
    primary: str,
    drop: float | None,
    metrics: dict[str, float | None],
    registered: dict[str, float],
) -> tuple[bool | None, str]:
    if labelled < monitoring.min_labelled_rows:
        return None, f"{labelled} labelled rows, fewer than min_labelled_rows {monitoring.min_labelled_rows}"
    if metrics.get(primary) is None:
        return None, f"{primary} is undefined on this window's labelled rows"
    if primary not in registered:
        return None, f"the model registered no {primary}"
    assert drop is not None
    return bool(drop > monitoring.quality_tolerance), ""


# --- classification --------------------------------------------------------------------------------


def classification_metrics(frame: pd.DataFrame, problem: ProblemConfig) -> dict[str, float | None]:
    """Metrics of the labelled rows in ``frame`` (``label``, ``prediction``, ``probability``)."""
    predicted = pd.to_numeric(frame["prediction"], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(predicted)
    y, p = frame["label"].to_numpy(dtype=float)[keep], predicted[keep]
    names = ("accuracy", "precision", "recall", "f1", "roc_auc")
    if not len(y):
        return dict.fromkeys(names)
    known = classes(problem)
    binary = (known is not None and len(known) == 2) or set(np.unique(np.r_[y, p])) <= {0.0, 1.0}
    out: dict[str, float | None] = {"accuracy": float(np.mean(y == p))}
    if binary:
        out.update(binary_scores(y, p, float(positive_label(problem))))
        probability = frame["probability"] if "probability" in frame.columns else None
        scores = (
            np.full(len(frame), np.nan)
            if probability is None
            else pd.to_numeric(probability, errors="coerce").to_numpy(dtype=float)
        )[keep]
        out["roc_auc"] = roc_auc(y, scores, float(positive_label(problem)))
    else:
        out.update(macro_scores(y, p))
        out["roc_auc"] = None
    return out


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def binary_scores(y: FloatArray, p: FloatArray, positive: float) -> dict[str, float | None]:
    true_positive = float(np.sum((y == positive) & (p == positive)))
    precision = _ratio(true_positive, float(np.sum(p == positive)))
    recall = _ratio(true_positive, float(np.sum(y == positive)))
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def macro_scores(y: FloatArray, p: FloatArray) -> dict[str, float | None]:
    """Unweighted means over every class in labels or predictions (scikit-learn's ``average="macro"``)."""
    per_class = [binary_scores(y, p, float(c)) for c in np.unique(np.r_[y, p])]
    return {
        name: float(np.mean([float(scores[name] or 0.0) for scores in per_class]))
        for name in ("precision", "recall", "f1")
    }


def roc_auc(y: FloatArray, scores: FloatArray, positive: float) -> float | None:
    """Mann-Whitney AUC with average ranks for ties: scikit-learn's ``roc_auc_score`` (trapezoids over the
    ROC curve equal it exactly). Rows without a score are left out; None without both classes."""
    keep = np.isfinite(scores)
    y, scores = y[keep], scores[keep]
    positives = y == positive
    n_pos = int(positives.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, tied values sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, len(values)])
    mean_rank = first + (counts + 1) / 2.0
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = mean_rank[group]
    return ranks


# --- regression ----------------------------------------------------------------------------------------


def regression_metrics(frame: pd.DataFrame) -> dict[str, float | None]:
    predicted = pd.to_numeric(frame["prediction"], errors="coerce").to_numpy(dtype=float)
    y = frame["label"].to_numpy(dtype=float)
    keep = np.isfinite(predicted) & np.isfinite(y)
    y, p = y[keep], predicted[keep]
    if not len(y):
        return dict.fromkeys(("rmse", "mae", "r2"))
    error = y - p
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": r2(y, p),
    }


def r2(y: FloatArray, p: FloatArray) -> float | None:
    """As scikit-learn's ``r2_score`` (``force_finite``): a constant target scores 1.0 when predicted
    exactly, else 0.0; one row has no R² (None)."""
    if len(y) < 2:
        return None
    residual = float(np.sum((y - p) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total
