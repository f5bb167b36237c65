"""Post-training tests: thresholds, the champion, behavioural checks, calibration, segments.

``scores`` are what the checks compare: the positive-class probability of a binary classifier, the
prediction of a regressor. Multi-class models get the metric checks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlcycle import modeling
from mlcycle.quality.report import CheckResult, Report

Problem = dict[str, Any]
Tests = dict[str, Any]
#: Metrics where a smaller value is the better one.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss", "brier_score", "expected_calibration_error"})
CALIBRATION_BINS = 10


def greater_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def scores(model: Any, frame: pd.DataFrame, problem: Problem) -> np.ndarray | None:
    """Positive-class probability (binary), prediction (regression), ``None`` (multi-class)."""
    x = modeling.features_frame(frame, problem)
    if problem["task"] == "regression":
        return np.asarray(model.predict(x), dtype=float)
    proba = np.asarray(model.predict_proba(x), dtype=float)
    return proba[:, 1] if proba.shape[1] == 2 else None


# ---- metric thresholds and the champion (MLflow's MetricThreshold) -------------------------------------


@dataclass(frozen=True)
class ChampionBasis:
    """What the champion checks compare: the challenger's and the champion's values measured alike, and
    where (``test split`` against the champion's registered test metrics, or the recent labelled rows)."""

    challenger: dict[str, float]
    champion: dict[str, float] | None
    name: str = "test split vs registered test metrics"


def metric_threshold_checks(
    spec: dict[str, Any],
    metrics: dict[str, float],
    champion: dict[str, float] | None,
    problem: Problem,
    basis: ChampionBasis | None = None,
) -> list[CheckResult]:
    """``threshold`` on ``metrics`` (the test split); the change against the champion on ``basis``
    (default: ``metrics`` against ``champion``)."""
    metric = problem["primary_metric"] if spec.get("metric", "primary") == "primary" else spec["metric"]
    gib = spec.get("greater_is_better")
    gib = greater_is_better(metric) if gib is None else bool(gib)
    if metric not in metrics:
        return [CheckResult(f"metric:{metric}", False, None, None, f"the evaluation has no {metric!r}")]
    value, out = metrics[metric], []
    if spec.get("threshold") is not None:
        bound = float(spec["threshold"])
        ok = value >= bound if gib else value <= bound
        detail = f"{metric} = {value:.4f}, {'minimum' if gib else 'maximum'} {bound}"
        out.append(CheckResult(f"threshold:{metric}", ok, value, bound, detail))
    if spec.get("min_absolute_change") is not None or spec.get("min_relative_change") is not None:
        out.append(_champion_check(metric, gib, spec, basis or ChampionBasis(metrics, champion)))
    return out


def _champion_check(metric: str, gib: bool, spec: dict[str, Any], basis: ChampionBasis) -> CheckResult:
    name, champion = f"vs_champion:{metric}", basis.champion
    if not champion or metric not in champion:
        return CheckResult.skip(name, "no champion to compare with")
    if metric not in basis.challenger:
        return CheckResult.skip(name, f"no challenger {metric} on the {basis.name}")
    value, base = float(basis.challenger[metric]), float(champion[metric])
    change = value - base if gib else base - value  # > 0: an improvement
    relative = change / abs(base) if base else float("inf") if change > 0 else 0.0
    min_abs, min_rel = spec.get("min_absolute_change"), spec.get("min_relative_change")
    ok = (min_abs is None or change >= min_abs) and (min_rel is None or relative >= min_rel)
    detail = (
        f"{metric} {value:.4f} vs champion {base:.4f}: change {change:+.4f} ({relative:+.2%}); "
        f"minimum change {min_abs if min_abs is not None else '-'} absolute, "
        f"{min_rel if min_rel is not None else '-'} relative (on the {basis.name})"
    )
    return CheckResult(name, ok, change, float(min_abs) if min_abs is not None else min_rel, detail)


# ---- behavioural checks ---------------------------------------------------------------------------------


def _behaviour_base(
    model: Any, test: pd.DataFrame, problem: Problem, feature: str, name: str
) -> np.ndarray | CheckResult:
    """The test set's scores that a behavioural check perturbs, or its result when it cannot run."""
    base = scores(model, test, problem)
    if base is None:
        return CheckResult.skip(name, "multi-class model")
    if feature not in test:
        return CheckResult(name, False, None, None, f"{feature!r} is not a column of the test set")
    return base


def invariance_check(model: Any, test: pd.DataFrame, problem: Problem, spec: dict[str, Any]) -> CheckResult:
    """Rows moved by more than epsilon when only ``feature`` changed, as a fraction of the rows tried."""
    feature, name = spec["feature"], f"invariance:{spec['feature']}"
    base = _behaviour_base(model, test, problem, feature, name)
    if isinstance(base, CheckResult):
        return base
    moved, tried = 0, 0
    for variant in _variants(test, feature, spec):
        changed = variant[feature].astype(str) != test[feature].astype(str)
        delta = np.abs(scores(model, variant, problem) - base)[changed.to_numpy()]  # type: ignore[operator]
        moved, tried = moved + int((delta > spec["epsilon"]).sum()), tried + int(changed.sum())
    if tried == 0:
        return CheckResult.skip(name, "no values to change")
    fraction, limit = moved / tried, float(spec["max_violation_fraction"])
    detail = (
        f"{fraction:.2%} of {tried} changed rows moved by more than {spec['epsilon']} (maximum {limit:.2%})"
    )
    return CheckResult(name, fraction <= limit, fraction, limit, detail)


def _variants(test: pd.DataFrame, feature: str, spec: dict[str, Any]) -> list[pd.DataFrame]:
    if spec.get("delta") is not None:
        return [test.assign(**{feature: pd.to_numeric(test[feature], errors="coerce") + spec["delta"]})]
    values = spec.get("values") or sorted(test[feature].dropna().astype(str).unique())
    return [test.assign(**{feature: value}) for value in values]


def directional_check(model: Any, test: pd.DataFrame, problem: Problem, spec: dict[str, Any]) -> CheckResult:
    """Adding ``delta`` to ``feature``: the mean shift must go the declared way, few rows against it."""
    feature, name = spec["feature"], f"directional:{spec['feature']}"
    base = _behaviour_base(model, test, problem, feature, name)
    if isinstance(base, CheckResult):
        return base
    moved = test.assign(**{feature: pd.to_numeric(test[feature], errors="coerce") + spec["delta"]})
    sign = 1.0 if spec["direction"] == "increase" else -1.0
    shift = sign * (scores(model, moved, problem) - base)  # type: ignore[operator]
    against = float((shift < -spec["tolerance"]).mean())
    limit = float(spec["max_violation_fraction"])
    ok = float(shift.mean()) >= 0 and against <= limit
    detail = (
        f"{feature} {spec['delta']:+g}: mean {spec['direction']} {shift.mean():+.4f}; {against:.2%} of rows "
        f"moved the other way by more than {spec['tolerance']} (maximum {limit:.2%})"
    )
    return CheckResult(name, ok, against, limit, detail)


# ---- calibration ----------------------------------------------------------------------------------------


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Mean |observed rate - predicted probability| over equal-width bins, weighted by bin size."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.mean() * abs(float(y[inside].mean()) - float(p[inside].mean()))
    return total


def calibration_checks(model: Any, test: pd.DataFrame, problem: Problem, tests: Tests) -> list[CheckResult]:
    p = scores(model, test, problem) if problem["task"] == "classification" else None
    if p is None:
        why = "regression model" if problem["task"] == "regression" else "multi-class model"
        return [CheckResult.skip("calibration_error", why), CheckResult.skip("brier_score", why)]
    y = test[problem["target"]].to_numpy().astype(int)
    out = []
    for name, value, limit in (
        ("calibration_error", expected_calibration_error(y, p), tests.get("max_calibration_error")),
        ("brier_score", float(np.mean((p - y) ** 2)), tests.get("max_brier_score")),
    ):
        if limit is None:
            out.append(CheckResult.skip(name, "no threshold configured"))
        else:
            out.append(
                CheckResult(name, value <= limit, value, float(limit), f"{value:.4f} (maximum {limit})")
            )
    return out


# ---- segments of a sensitive attribute ------------------------------------------------------------------


def segment_rates(
    model: Any, test: pd.DataFrame, problem: Problem, attribute: str, min_rows: int
) -> pd.DataFrame:
    """Per segment: rows, positive prediction rate, recall (NaN without positives)."""
    x = modeling.features_frame(test, problem)
    frame = pd.DataFrame(
        {
            "segment": test[attribute].astype(str).to_numpy(),
            "pred": np.asarray(model.predict(x)).astype(int),
            "y": test[problem["target"]].to_numpy().astype(int),
        }
    )
    rows = frame.groupby("segment").size()
    positive_rate = frame.groupby("segment")["pred"].mean()
    recall = frame[frame["y"] == 1].groupby("segment")["pred"].mean()
    table = pd.DataFrame({"rows": rows, "positive_rate": positive_rate, "recall": recall})
    return table[table["rows"] >= min_rows]


def segment_checks(model: Any, test: pd.DataFrame, problem: Problem, tests: Tests) -> list[CheckResult]:
    attribute = tests.get("sensitive_attribute")
    names = ("segment_positive_rate_gap", "segment_recall_gap")
    if not attribute:
        return [CheckResult.skip(n, "no sensitive attribute configured") for n in names]
    if problem["task"] != "classification" or scores(model, test.head(1), problem) is None:
        return [CheckResult.skip(n, "needs a binary classifier") for n in names]
    if attribute not in test:
        return [
            CheckResult(n, False, None, None, f"{attribute!r} is not a column of the test set") for n in names
        ]
    table = segment_rates(model, test, problem, attribute, int(tests["min_segment_rows"]))
    out = []
    for name, column, limit in (
        (names[0], "positive_rate", float(tests["max_positive_rate_difference"])),
        (names[1], "recall", float(tests["max_recall_difference"])),
    ):
        values = table[column].dropna()
        if len(values) < 2:
            out.append(CheckResult.skip(name, f"fewer than two {attribute} segments large enough"))
            continue
        gap = float(values.max() - values.min())
        detail = (
            f"{column} by {attribute} from {values.min():.3f} ({values.idxmin()}) to {values.max():.3f} "
            f"({values.idxmax()}): gap {gap:.3f} (maximum {limit})"
        )
        out.append(CheckResult(name, gap <= limit, gap, limit, detail))
    return out


def post_training_tests(
    model: Any,
    test: pd.DataFrame,
    problem: Problem,
    tests: Tests,
    *,
    metrics: dict[str, float],
    champion_metrics: dict[str, float] | None = None,
    min_primary_metric: float | None = None,
    champion_basis: ChampionBasis | None = None,
) -> Report:
    """Every post-training check; ``min_primary_metric`` is the quality gate (``thresholds``), on the test
    split; ``champion_basis`` (default: ``metrics`` against ``champion_metrics``) what the champion
    checks compare."""
    thresholds = list(tests.get("metric_thresholds", ()))
    if min_primary_metric is not None:
        thresholds.insert(0, {"metric": "primary", "threshold": min_primary_metric})
    checks = [
        c
        for spec in thresholds
        for c in metric_threshold_checks(spec, metrics, champion_metrics, problem, champion_basis)
    ]
    checks += [invariance_check(model, test, problem, spec) for spec in tests.get("invariance", ())]
    checks += [directional_check(model, test, problem, spec) for spec in tests.get("directional", ())]
    checks += calibration_checks(model, test, problem, tests)
    checks += segment_checks(model, test, problem, tests)
    return Report("post_training", checks)
