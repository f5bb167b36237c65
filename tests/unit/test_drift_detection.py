"""Drift verdicts with known answers: synthetic shifts, null splits, Evidently's choice of tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcycle.monitoring.drift import DriftOptions, compare
from mlcycle.monitoring.profile import infer_schema, profile
from mlcycle.monitoring.sources import ParquetColumns

SCHEMA = {"amount": "numeric", "tenure": "numeric", "plan": "categorical", "region": "categorical"}


def frame(n: int, seed: int, **changes: float) -> pd.DataFrame:
    """Mixed columns; ``changes`` shift one aspect each (location, scale, new_category, missing)."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(100 + changes.get("location", 0.0) * 15, 15 * changes.get("scale", 1.0), n)
    amount[rng.random(n) < 0.01 + changes.get("missing", 0.0)] = np.nan
    tenure = rng.gamma(2.0, 12.0, n)
    plans = np.array(["basic", "plus", "pro"])
    plan = plans[rng.choice(3, n, p=[0.5, 0.3, 0.2])].astype(object)
    new = rng.random(n) < changes.get("new_category", 0.0)
    plan[new] = "enterprise"
    regions = np.array([f"r{i}" for i in range(8)])
    region = regions[rng.integers(0, 8, n)]
    return pd.DataFrame({"amount": amount, "tenure": tenure, "plan": plan, "region": region})


# --- known shifts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [400, 5000])
def test_a_location_shift_drifts_that_column_only(rows: int) -> None:
    report = compare(frame(rows, 1), frame(rows, 2, location=0.5), SCHEMA)
    assert report.column("amount").drifted
    assert report.column("amount").test == ("ks" if rows <= 1000 else "wasserstein")
    assert not any(report.column(c).drifted for c in ("tenure", "plan", "region"))
    assert report.dataset.drifted is False and report.dataset.share == pytest.approx(0.25)


@pytest.mark.parametrize("rows", [400, 5000])
def test_a_scale_shift_drifts(rows: int) -> None:
    report = compare(frame(rows, 1), frame(rows, 2, scale=2.0), SCHEMA)
    assert report.column("amount").drifted


@pytest.mark.parametrize("rows", [400, 5000])
def test_a_new_category_drifts_and_is_named(rows: int) -> None:
    report = compare(frame(rows, 1), frame(rows, 2, new_category=0.3), SCHEMA)
    plan = report.column("plan")
    assert plan.drifted and plan.unseen_categories == ["enterprise"]
    assert plan.unseen_share == pytest.approx(0.3, abs=0.05)
    assert plan.test == ("chisquare" if rows <= 1000 else "jensenshannon")


def test_a_rare_new_category_is_reported_without_alarming() -> None:
    reference, current = frame(5000, 1), frame(5000, 2)
    current.loc[:2, "plan"] = "enterprise"
    plan = compare(reference, current, SCHEMA).column("plan")
    assert plan.unseen_categories == ["enterprise"] and not plan.drifted


@pytest.mark.parametrize("rows", [400, 5000])
def test_a_surge_of_missing_values_is_reported_and_counts_as_drift(rows: int) -> None:
    report = compare(frame(rows, 1), frame(rows, 2, missing=0.4), SCHEMA)
    amount = report.column("amount")
    assert amount.missing_surge and amount.drifted
    assert amount.current_missing_share == pytest.approx(0.41, abs=0.06)
    assert "missing values surged" in amount.reason


def test_a_small_rise_of_missing_values_is_no_surge() -> None:
    report = compare(frame(5000, 1), frame(5000, 2, missing=0.01), SCHEMA)
    assert not report.column("amount").missing_surge


def test_many_drifted_columns_drift_the_dataset() -> None:
    current = frame(3000, 2, location=1.0, new_category=0.4)
    current["tenure"] = current["tenure"] * 2
    report = compare(frame(3000, 1), current, SCHEMA)
    assert report.dataset.drifted is True
    assert report.dataset.share == pytest.approx(0.75)
    assert report.dataset.drifted_columns == ["amount", "tenure", "plan"]


def test_importance_weights_move_the_share() -> None:
    reference, current = frame(3000, 1), frame(3000, 2, location=1.0)
    options = DriftOptions(weights={"amount": 3.0, "tenure": 1.0, "plan": 1.0, "region": 1.0})
    report = compare(reference, current, SCHEMA, options)
    assert report.dataset.share == pytest.approx(0.5) and report.dataset.drifted is True


def test_prediction_drift_is_a_column_reported_apart() -> None:
    reference, current = frame(3000, 1), frame(3000, 2, location=1.0)
    reference["score"] = 1 / (1 + np.exp(-(reference["amount"] - 100) / 15))
    current["score"] = 1 / (1 + np.exp(-(current["amount"] - 100) / 15))
    report = compare(reference, current, SCHEMA, DriftOptions(prediction="score"))
    assert report.prediction is not None and report.prediction.column == "score"
    assert report.prediction.drifted and report.prediction.test == "wasserstein"
    assert "score" not in [c.column for c in report.columns]
    assert report.column("score") is report.prediction


# --- effect sizes: large samples do not alarm on negligible shifts -----------------------------------


def test_a_negligible_shift_in_a_million_rows_does_not_alarm() -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 1_000_000)})
    current = pd.DataFrame({"x": rng.normal(0.02, 1, 1_000_000)})
    x = compare(reference, current, {"x": "numeric"}).column("x")
    assert x.test == "wasserstein" and x.score == pytest.approx(0.02, abs=0.005) and not x.drifted
    # forced to KS the shift is significant, but its effect is below the floor
    forced = compare(reference, current, {"x": "numeric"}, DriftOptions(tests={"x": "ks"})).column("x")
    assert forced.p_value is not None and forced.p_value < 1e-10 and not forced.drifted
    assert "below" in forced.reason


def test_jensen_shannon_noise_over_many_categories_is_not_drift() -> None:
    # 60 categories, 1200 rows each side: Evidently's JS distance exceeds 0.1 on pure noise here.
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(60))
    pool = pd.DataFrame({"c": rng.choice(60, 2400, p=p).astype(str)})
    report = compare(pool.iloc[:1200], pool.iloc[1200:], {"c": "categorical"})
    c = report.column("c")
    assert c.test == "jensenshannon" and c.score is not None and c.score >= 0.1
    assert not c.drifted and "not significant" in c.reason


# --- Evidently's choice of test ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "values", "kind", "test"),
    [
        (1000, 50, "numeric", "ks"),
        (1000, 4, "numeric", "chisquare"),
        (1000, 2, "numeric", "z"),
        (1000, 3, "categorical", "chisquare"),
        (1000, 2, "categorical", "z"),
        (1001, 50, "numeric", "wasserstein"),
        (1001, 5, "numeric", "jensenshannon"),
        (1001, 2, "categorical", "jensenshannon"),
    ],
)
def test_the_test_follows_evidentlys_defaults(rows: int, values: int, kind: str, test: str) -> None:
    rng = np.random.default_rng(5)
    column = rng.integers(0, values, rows).astype(float)
    reference = pd.DataFrame({"c": column if kind == "numeric" else column.astype(int).astype(str)})
    result = compare(reference, reference.sample(frac=1.0, random_state=1), {"c": kind}).column("c")  # type: ignore[dict-item]
    assert result.test == test
    assert result.threshold == (0.05 if test in ("ks", "chisquare", "z") else 0.1)


def test_psi_can_be_chosen_per_column() -> None:
    report = compare(
        frame(3000, 1), frame(3000, 2, location=1.0), SCHEMA, DriftOptions(tests={"amount": "psi"})
    )
    amount = report.column("amount")
    assert amount.test == "psi" and amount.drifted and amount.threshold == 0.1


# --- null splits -------------------------------------------------------------------------------------


def test_null_splits_alarm_at_most_five_percent_of_the_time() -> None:
    alarms, column_alarms, checks = 0, 0, 0
    for trial in range(200):
        rows = 300 if trial % 2 else 1500  # both regimes: p-value tests and distances
        pool = frame(2 * rows, 1000 + trial)
        order = np.random.default_rng(trial).permutation(2 * rows)
        report = compare(pool.iloc[order[:rows]], pool.iloc[order[rows:]], SCHEMA)
        alarms += bool(report.dataset.drifted)
        column_alarms += sum(bool(c.drifted) for c in report.columns)
        checks += len(report.columns)
    assert alarms / 200 <= 0.05
    assert column_alarms / checks <= 0.08  # each column's test at 5%, a little slack for 800 draws


def test_a_profiled_reference_gives_the_same_report() -> None:
    reference, current = frame(3000, 1), frame(2000, 2, location=0.3)
    direct = compare(reference, current, SCHEMA)
    reused = compare(profile(reference, SCHEMA), current, SCHEMA)
    assert direct.to_dict() == reused.to_dict()


def test_infer_schema() -> None:
    data = pd.DataFrame({"a": [1, 2], "b": [1.5, 2.5], "c": ["x", "y"], "d": [True, False]})
    assert infer_schema(data) == {"a": "numeric", "b": "numeric", "c": "categorical", "d": "categorical"}
    assert infer_schema(data, exclude=("a",)) == {"b": "numeric", "c": "categorical", "d": "categorical"}


def test_large_windows_take_the_bucketed_path_with_the_same_scores() -> None:
    # Above 50k rows the sides are not sorted: the distance comes from buckets, exact all the same.
    reference, current = frame(150_000, 1), frame(150_000, 2, location=0.2, new_category=0.1)
    bucketed = compare(reference, current, SCHEMA)
    sorted_path = compare(reference, current, SCHEMA, DriftOptions(significance_max_rows=200_000))
    for name in SCHEMA:
        a, b = bucketed.column(name), sorted_path.column(name)
        assert a.test == b.test and a.drifted == b.drifted
        assert a.score == pytest.approx(b.score, rel=1e-9)
    assert bucketed.column("amount").drifted and not bucketed.column("tenure").drifted
    profiled = compare(profile(reference, SCHEMA), current, SCHEMA)
    assert profiled.column("amount").score == pytest.approx(bucketed.column("amount").score, rel=1e-9)


def test_parquet_files_compared_column_by_column_give_the_frames_report(tmp_path: Path) -> None:
    reference, current = frame(3000, 1), frame(3000, 2, location=0.5)
    reference.to_parquet(tmp_path / "reference.parquet")
    current.drop(columns=["region"]).to_parquet(tmp_path / "current.parquet")
    from_files = compare(
        ParquetColumns(tmp_path / "reference.parquet"), ParquetColumns(tmp_path / "current.parquet"), SCHEMA
    )
    from_frames = compare(reference, current.drop(columns=["region"]), SCHEMA)
    assert from_files.to_dict() == from_frames.to_dict()
    assert from_files.column("region").test == "missing"
