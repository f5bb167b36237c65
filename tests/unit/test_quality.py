"""Every check of mlcycle.quality on small hand-made frames and stub models."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcycle import quality
from mlcycle.config import ModelTestsSettings, Settings
from mlcycle.quality import post_training as post
from mlcycle.quality import pre_training as pre
from mlcycle.quality.baselines import OTHER, feature_baselines


@pytest.fixture(scope="module")
def problem(settings: Settings) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(settings.problem.model_dump_json())
    return loaded


@pytest.fixture(scope="module")
def tests(settings: Settings) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(settings.model_tests.model_dump_json())
    return loaded


def _frame(n: int = 400, seed: int = 0, **columns: Any) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i}" for i in range(n)],
            "event_time": pd.Timestamp("2026-01-10", tz="UTC") + pd.to_timedelta(np.arange(n), unit="h"),
            "tenure_months": rng.integers(0, 100, n),
            "monthly_charges": rng.uniform(20, 120, n),
            "support_calls": rng.integers(0, 6, n),
            "age": rng.integers(18, 90, n),
            "contract": rng.choice(["month-to-month", "one-year", "two-year"], n),
            "payment_method": rng.choice(["card", "bank-transfer"], n),
            "region": rng.choice(["north", "south", "east", "west"], n),
            "churned": (rng.random(n) < 0.3).astype(int),
        }
    )
    return frame.assign(**columns)


class StubModel:
    """p(churn) = a logistic function of support_calls, plus ``region_effect`` for region 'north'."""

    def __init__(self, slope: float = 0.8, region_effect: float = 0.0) -> None:
        self.slope, self.region_effect = slope, region_effect

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        logit = -1.5 + self.slope * x["support_calls"].to_numpy(dtype=float)
        logit = logit + self.region_effect * (x["region"].astype(str) == "north").to_numpy()
        p = 1 / (1 + np.exp(-logit))
        return np.column_stack([1 - p, p])

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(x)[:, 1] >= 0.5).astype(int)


def _by_name(report: quality.Report) -> dict[str, quality.CheckResult]:
    return {c.name: c for c in report.checks}


# ---- report ---------------------------------------------------------------------------------------------


def test_report_summarises_and_round_trips() -> None:
    # GIVEN one passing, one failing and one skipped check
    report = quality.Report(
        "post_training",
        [
            quality.CheckResult("a", True, 1.0, 0.5, "fine"),
            quality.CheckResult("b", False, float("nan"), 0.1, "too high"),
            quality.CheckResult.skip("c", "not applicable"),
        ],
    )
    # THEN it fails, names what failed, and serializes to strict JSON (NaN -> null)
    assert not report.passed and [c.name for c in report.failed] == ["b"]
    assert report.summary() == "post_training tests: 1 of 2 checks failed: b: too high"
    data = json.loads(report.to_json())
    assert data["passed"] is False and data["checks"][1]["value"] is None
    assert quality.Report.from_dict(data).failed[0].name == "b"
    with pytest.raises(quality.ModelTestsFailed, match="b: too high"):
        report.raise_for_failures()


# ---- pre-training ---------------------------------------------------------------------------------------


def test_clean_training_set_passes(problem: dict[str, Any], tests: dict[str, Any]) -> None:
    report = quality.pre_training_tests(_frame(seed=1), _frame(100, seed=2), problem, tests)
    assert report.passed, report.summary()
    assert _by_name(report)["no_future_features"].skipped  # no feature timestamp columns


def test_schema_finds_missing_columns_non_numeric_values_and_unknown_categories(
    problem: dict[str, Any],
) -> None:
    train = _frame(seed=1).drop(columns=["age"]).assign(tenure_months="x", contract="weekly")
    result = pre.schema_check(train, _frame(50, seed=2), problem)
    assert not result.passed and result.value == 3
    assert (
        "train lacks 'age'" in result.detail and "non-numeric" in result.detail and "weekly" in result.detail
    )


def test_min_rows(tests: dict[str, Any]) -> None:
    assert pre.min_rows_check(_frame(200), tests).passed
    small = pre.min_rows_check(_frame(199), tests)
    assert not small.passed and small.value == 199 and small.threshold == 200


def test_label_balance(problem: dict[str, Any], tests: dict[str, Any]) -> None:
    assert pre.label_balance_check(_frame(), problem, tests).passed
    rare = _frame(1000).assign(churned=([1] * 20) + [0] * 980)
    assert not pre.label_balance_check(rare, problem, tests).passed  # 2% < 5%
    single = pre.label_balance_check(_frame().assign(churned=0), problem, tests)
    assert not single.passed and "single class" in single.detail
    regression = problem | {"task": "regression"}
    assert pre.label_balance_check(_frame(), regression, tests).skipped


def test_leakage_is_generic_over_feature_timestamp_columns(
    problem: dict[str, Any], tests: dict[str, Any]
) -> None:
    # GIVEN two views' timestamps, one of them later than the event on 3 rows
    frame = _frame(50)
    frame["customer_profile__event_time"] = frame["event_time"] - pd.Timedelta(days=1)
    late = frame["event_time"] - pd.Timedelta(hours=1)
    late.iloc[:3] = frame["event_time"].iloc[:3] + pd.Timedelta(minutes=5)
    frame["customer_activity__event_time"] = late
    # THEN the check names the view and counts the rows
    result = pre.leakage_check(frame, problem, tests)
    assert (
        not result.passed and result.value == 3 and "customer_activity__event_time: 3 rows" in result.detail
    )
    frame["customer_activity__event_time"] = frame["event_time"]  # known at the event: fine
    assert pre.leakage_check(frame, problem, tests).passed


def test_entity_overlap(problem: dict[str, Any]) -> None:
    train, test = _frame(seed=1), _frame(20, seed=2)
    assert pre.entity_overlap_check(train, test, problem).passed
    overlap = pre.entity_overlap_check(train, pd.concat([test, train.head(4)]), problem)
    assert not overlap.passed and overlap.value == 4
    keyless = problem | {"dataset": problem["dataset"] | {"key": None}}
    assert pre.entity_overlap_check(train, test, keyless).skipped


# ---- post-training --------------------------------------------------------------------------------------


def test_metric_threshold_and_champion_like_mlflow(problem: dict[str, Any]) -> None:
    spec = {"metric": "primary", "threshold": 0.7, "min_absolute_change": -0.02}
    results = post.metric_threshold_checks(spec, {"roc_auc": 0.80}, {"roc_auc": 0.81}, problem)
    assert [(r.name, r.passed) for r in results] == [
        ("threshold:roc_auc", True),
        ("vs_champion:roc_auc", True),
    ]
    worse = post.metric_threshold_checks(spec, {"roc_auc": 0.78}, {"roc_auc": 0.81}, problem)[1]
    assert not worse.passed and worse.value == pytest.approx(-0.03)
    relative = {"metric": "roc_auc", "min_relative_change": 0.05}
    assert not post.metric_threshold_checks(relative, {"roc_auc": 0.84}, {"roc_auc": 0.81}, problem)[0].passed
    assert post.metric_threshold_checks(relative, {"roc_auc": 0.86}, {"roc_auc": 0.81}, problem)[0].passed
    # lower is better: rmse 2.0 vs 2.1 is an improvement of 0.1
    rmse = post.metric_threshold_checks(
        {"metric": "rmse", "threshold": 3.0, "min_absolute_change": 0.05},
        {"rmse": 2.0},
        {"rmse": 2.1},
        problem,
    )
    assert all(r.passed for r in rmse)
    assert post.metric_threshold_checks(spec, {"roc_auc": 0.8}, None, problem)[1].skipped
    assert not post.metric_threshold_checks({"metric": "f1", "threshold": 0.5}, {}, None, problem)[0].passed


def test_invariance(problem: dict[str, Any]) -> None:
    test, spec = (
        _frame(),
        {"feature": "region", "values": ["north", "south"], "epsilon": 0.05, "max_violation_fraction": 0.05},
    )
    assert post.invariance_check(StubModel(), test, problem, spec).value == 0
    biased = post.invariance_check(StubModel(region_effect=2.0), test, problem, spec)
    assert not biased.passed and (biased.value or 0) > 0.5
    shifted = post.invariance_check(
        StubModel(), test, problem, spec | {"feature": "age", "delta": 5, "values": ()}
    )
    assert shifted.passed  # the stub ignores age


def test_directional(problem: dict[str, Any]) -> None:
    spec = {
        "feature": "support_calls",
        "delta": 1,
        "direction": "increase",
        "tolerance": 0.01,
        "max_violation_fraction": 0.1,
    }
    up = post.directional_check(StubModel(slope=0.8), _frame(), problem, spec)
    assert up.passed and up.value == 0
    down = post.directional_check(StubModel(slope=-0.8), _frame(), problem, spec)
    assert not down.passed and (down.value or 0) > 0.5  # rows already near p=0 barely move
    assert post.directional_check(
        StubModel(slope=-0.8), _frame(), problem, spec | {"direction": "decrease"}
    ).passed


class ThreeClassStub(StubModel):
    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return np.full((len(x), 3), 1 / 3)


@pytest.mark.parametrize("check", [post.invariance_check, post.directional_check])
def test_behavioural_checks_that_cannot_run_say_why(problem: dict[str, Any], check: Any) -> None:
    spec = {
        "feature": "no_such_column",
        "delta": 1,
        "values": (),
        "direction": "increase",
        "epsilon": 0.05,
        "tolerance": 0.01,
        "max_violation_fraction": 0.1,
    }
    # GIVEN a feature the test set lacks: the check fails and names it
    missing = check(StubModel(), _frame(), problem, spec)
    assert not missing.passed and "'no_such_column' is not a column" in missing.detail
    # AND a multi-class model: the check is skipped, with the reason
    skipped = check(ThreeClassStub(), _frame(), problem, spec | {"feature": "support_calls"})
    assert skipped.passed and "multi-class" in skipped.detail


def test_calibration() -> None:
    y = np.array([0, 0, 1, 1])
    assert post.expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0
    assert post.expected_calibration_error(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.0)
    assert post.expected_calibration_error(np.array([1, 1]), np.array([0.2, 0.2])) == pytest.approx(0.8)


def test_calibration_checks_on_a_well_and_a_badly_calibrated_model(
    problem: dict[str, Any], tests: dict[str, Any]
) -> None:
    model = StubModel()
    test = _frame(2000)
    p = model.predict_proba(test)[:, 1]
    test["churned"] = (np.random.default_rng(3).random(len(test)) < p).astype(int)  # labels drawn from p
    good = _by_name(quality.Report("post_training", post.calibration_checks(model, test, problem, tests)))
    assert good["calibration_error"].passed and good["brier_score"].passed
    bad = post.calibration_checks(model, test.assign(churned=1 - test["churned"]), problem, tests)
    assert not any(c.passed for c in bad)
    assert all(
        c.skipped for c in post.calibration_checks(model, test, problem | {"task": "regression"}, tests)
    )


def test_segments(problem: dict[str, Any], tests: dict[str, Any]) -> None:
    test = _frame(2000)
    test["churned"] = StubModel().predict(test)  # recall 1 everywhere
    fair = {c.name: c for c in post.segment_checks(StubModel(), test, problem, tests)}
    assert fair["segment_positive_rate_gap"].passed and fair["segment_recall_gap"].value == 0
    unfair = {c.name: c for c in post.segment_checks(StubModel(region_effect=4.0), test, problem, tests)}
    assert (
        not unfair["segment_positive_rate_gap"].passed
        and "north" in unfair["segment_positive_rate_gap"].detail
    )
    none = post.segment_checks(StubModel(), test, problem, tests | {"sensitive_attribute": None})
    assert all(c.skipped for c in none)


def test_post_training_report_includes_the_quality_gate(
    problem: dict[str, Any], tests: dict[str, Any]
) -> None:
    test = _frame(1000)
    test["churned"] = StubModel().predict(test)
    report = quality.post_training_tests(
        StubModel(),
        test,
        problem,
        tests,
        metrics={"roc_auc": 0.6},
        champion_metrics=None,
        min_primary_metric=0.7,
    )
    assert "threshold:roc_auc" in [c.name for c in report.failed]
    assert report.checks[0].name == "threshold:roc_auc" and report.checks[0].threshold == 0.7


# ---- baselines ------------------------------------------------------------------------------------------


def test_baselines_sketch_every_feature(problem: dict[str, Any]) -> None:
    train = _frame(1000).astype({"age": "float64"})
    train.loc[:9, "age"] = np.nan
    baseline = feature_baselines(train, problem, bins=4, top=2)
    assert set(baseline["features"]) == set(problem["features"]) and baseline["rows"] == 1000
    age = baseline["features"]["age"]
    assert age["type"] == "numeric" and age["missing"] == pytest.approx(0.01)
    assert len(age["bin_edges"]) == 5 and sum(age["bin_counts"]) == 990
    region = baseline["features"]["region"]
    assert region["distinct"] == 4 and set(region["frequencies"]) >= {OTHER}
    assert sum(region["frequencies"].values()) == pytest.approx(1.0)
    assert baseline["target"]["type"] == "categorical"
    json.dumps(baseline)  # plain JSON


def test_settings_defaults_fit_the_example(settings: Settings) -> None:
    assert settings.model_tests.sensitive_attribute == "region"
    assert ModelTestsSettings().sensitive_attribute is None  # other problems declare their own
