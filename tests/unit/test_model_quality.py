"""Model quality on labelled windows: NumPy metrics equal scikit-learn's (1e-9), the verdict against the
registered metrics, insufficient data, and JSON without NaN."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from mlcycle.config import MonitoringSettings, ProblemConfig
from mlcycle.example import churn
from mlcycle.monitoring import model_quality, outcomes
from mlcycle.monitoring.model_quality import average_ranks, roc_auc

TOL = 1e-9


@pytest.fixture
def problem() -> ProblemConfig:
    return churn.default_problem()


@pytest.fixture
def regression() -> ProblemConfig:
    return churn.default_problem().model_copy(
        update={"task": "regression", "target": "monthly_charges", "primary_metric": "rmse"}
    )


def _window(prediction: np.ndarray, probability: np.ndarray | None = None) -> pd.DataFrame:
    n = len(prediction)
    return pd.DataFrame(
        {
            "prediction": prediction,
            "probability": np.full(n, np.nan) if probability is None else probability,
            "inference_id": [f"id-{i}" for i in range(n)],
            "model_version": 1,
        }
    )


def _joined(window: pd.DataFrame, label: np.ndarray, labelled: int | None = None) -> outcomes.Joined:
    count = len(label) if labelled is None else labelled
    truth = pd.DataFrame({"inference_id": window["inference_id"][:count], "label": label[:count]})
    return outcomes.join(window, truth)


def _binary_case(seed: int, n: int, rounding: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    score = np.clip(0.3 * y + rng.normal(0.35, 0.2, n), 0, 1)
    if rounding is not None:  # coarse scores: many ties across the classes
        score = np.round(score, rounding)
    return y, score, (score >= 0.5).astype(int)


@pytest.mark.parametrize(("seed", "n", "rounding"), [(0, 1000, None), (1, 500, 1), (2, 37, 2), (3, 5000, 0)])
def test_binary_metrics_match_scikit_learn(
    seed: int, n: int, rounding: int | None, problem: ProblemConfig
) -> None:
    y, score, pred = _binary_case(seed, n, rounding)
    got = model_quality.classification_metrics(_joined(_window(pred, score), y).frame, problem)
    expected = {
        "accuracy": sk.accuracy_score(y, pred),
        "precision": sk.precision_score(y, pred, zero_division=0),
        "recall": sk.recall_score(y, pred, zero_division=0),
        "f1": sk.f1_score(y, pred, zero_division=0),
        "roc_auc": sk.roc_auc_score(y, score),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=TOL, rel=TOL), name


def test_average_ranks_and_auc_with_ties() -> None:
    values = np.array([3.0, 1.0, 3.0, 2.0, 3.0])
    np.testing.assert_allclose(average_ranks(values), [4.0, 1.0, 4.0, 2.0, 4.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    assert roc_auc(y, values, 1.0) == pytest.approx(sk.roc_auc_score(y, values), abs=TOL)
    assert roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3]), 1.0) is None  # one class: undefined


def test_nothing_predicted_positive_scores_zero_as_scikit_learn(problem: ProblemConfig) -> None:
    y, pred = np.array([1, 0, 1, 0]), np.zeros(4, dtype=int)
    got = model_quality.classification_metrics(_joined(_window(pred), y).frame, problem)
    assert got["precision"] == sk.precision_score(y, pred, zero_division=0) == 0.0
    assert got["f1"] == 0.0 and got["roc_auc"] is None  # no probabilities captured


def test_multiclass_metrics_are_macro_averages(problem: ProblemConfig) -> None:
    multi = problem.model_copy(update={"target": "support_calls"})  # an int with a wide range: 51 classes
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 400)
    pred = np.where(rng.random(400) < 0.6, y, rng.integers(0, 5, 400))
    got = model_quality.classification_metrics(_joined(_window(pred), y).frame, multi)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, pred), abs=TOL)
    for name, fn in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
        assert got[name] == pytest.approx(fn(y, pred, average="macro", zero_division=0), abs=TOL), name
    assert got["roc_auc"] is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(60, 20, 300)
    pred = y + rng.normal(0, 8, 300)
    got = model_quality.regression_metrics(_joined(_window(pred), y).frame)
    assert got["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, pred)), abs=TOL, rel=TOL)
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(y, pred), abs=TOL, rel=TOL)
    assert got["r2"] == pytest.approx(sk.r2_score(y, pred), abs=TOL, rel=TOL)


def test_r2_of_a_constant_target_as_scikit_learn() -> None:
    y = np.full(5, 3.0)
    assert model_quality.r2(y, y) == sk.r2_score(y, y) == 1.0
    assert model_quality.r2(y, y + 1) == sk.r2_score(y, y + 1) == 0.0


def test_degraded_when_the_primary_metric_falls_beyond_the_tolerance(problem: ProblemConfig) -> None:
    y, score, pred = _binary_case(0, 1000, None)
    auc = sk.roc_auc_score(y, score)
    settings = MonitoringSettings(quality_tolerance=0.05, min_labelled_rows=50)
    joined = _joined(_window(pred, score), y)
    fine = model_quality.evaluate(joined, problem, {"roc_auc": auc + 0.04, "accuracy": 0.8}, settings)
    worse = model_quality.evaluate(joined, problem, {"roc_auc": auc + 0.06}, settings)
    assert fine.degraded is False and fine.drop == pytest.approx(0.04)
    assert worse.degraded is True and worse.drop == pytest.approx(0.06)
    assert fine.primary_metric == "roc_auc" and fine.registered == {"roc_auc": auc + 0.04, "accuracy": 0.8}


def test_lower_is_better_metrics_drop_upwards(regression: ProblemConfig) -> None:
    y = np.linspace(0, 100, 200)
    joined = _joined(_window(y + 10.0), y)  # rmse 10
    result = model_quality.evaluate(
        joined, regression, {"rmse": 4.0}, MonitoringSettings(quality_tolerance=1)
    )
    assert result.metrics["rmse"] == pytest.approx(10.0) and result.drop == pytest.approx(6.0)
    assert result.degraded is True


def test_too_few_labels_is_insufficient_data_not_a_verdict(problem: ProblemConfig) -> None:
    y, score, pred = _binary_case(1, 400, None)
    joined = _joined(_window(pred, score), y, labelled=20)
    result = model_quality.evaluate(
        joined, problem, {"roc_auc": 0.99}, MonitoringSettings(min_labelled_rows=50)
    )
    assert result.degraded is None and "20 labelled rows" in result.reason
    assert (result.rows, result.labelled, result.coverage) == (400, 20, 0.05)


def test_undefined_metrics_give_json_without_nan(problem: ProblemConfig) -> None:
    # Every labelled row of one class: no AUC; and no label at all: no metric.
    window = _window(np.array([1, 1, 0]), np.array([0.9, np.nan, 0.2]))
    one_class = model_quality.evaluate(
        _joined(window, np.array([1, 1, 1])),
        problem,
        {"roc_auc": float("nan"), "accuracy": 0.8},
        MonitoringSettings(min_labelled_rows=1),
    )
    assert one_class.metrics["roc_auc"] is None and one_class.degraded is None
    assert one_class.registered == {"accuracy": 0.8}
    unlabelled = model_quality.evaluate(
        _joined(window, np.array([1]), labelled=0), problem, {}, MonitoringSettings()
    )
    assert unlabelled.coverage == 0.0 and set(unlabelled.metrics.values()) == {None}
    for result in (one_class, unlabelled):
        assert json.loads(result.to_json())["rows"] == 3  # allow_nan=False: a NaN would raise
