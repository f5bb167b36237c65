"""Edge cases get defined answers: small windows, constant, all-missing and unseen columns; no NaN."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mlcycle.monitoring.drift import DriftOptions, DriftReport, compare


def _numbers_in(report: DriftReport) -> list[float]:
    found: list[float] = []

    def walk(value: object) -> None:
        if isinstance(value, float):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(report.to_dict(summaries=True))
    return found


def _assert_clean(report: DriftReport) -> None:
    assert all(math.isfinite(v) for v in _numbers_in(report))
    json.loads(report.to_json(summaries=True))  # allow_nan=False: raises on NaN or infinity


def test_a_window_below_the_minimum_gives_no_verdict() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500)})
    current = pd.DataFrame({"x": rng.normal(5, 1, size=8), "c": ["z"] * 8})  # 8 rows, wildly different
    report = compare(reference, current, {"x": "numeric", "c": "categorical"})
    assert report.dataset.status == "insufficient_data" and report.dataset.drifted is None
    assert all(c.status == "insufficient_data" and c.drifted is None for c in report.columns)
    _assert_clean(report)


def test_min_rows_is_a_setting() -> None:
    reference = pd.DataFrame({"x": np.arange(100.0)})
    current = pd.DataFrame({"x": np.arange(20.0) + 500})
    assert compare(reference, current, {"x": "numeric"}).dataset.status == "insufficient_data"
    report = compare(reference, current, {"x": "numeric"}, DriftOptions(min_rows=10))
    assert report.dataset.status == "ok" and report.dataset.drifted is True


def test_a_column_with_too_few_present_values_has_no_verdict_but_the_dataset_does() -> None:
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"x": rng.normal(size=400), "y": rng.normal(size=400)})
    current = pd.DataFrame({"x": rng.normal(size=400), "y": rng.normal(size=400)})
    reference.loc[10:, "y"] = np.nan  # 10 present values in the reference
    report = compare(reference, current, {"x": "numeric", "y": "numeric"})
    assert report.column("y").status == "insufficient_data" and report.column("y").drifted is None
    assert report.dataset.status == "ok" and report.dataset.columns_with_verdict == 1
    _assert_clean(report)


@pytest.mark.parametrize("rows", [200, 3000])
def test_constant_columns(rows: int) -> None:
    reference = pd.DataFrame({"same": np.full(rows, 7.0), "moved": np.full(rows, 7.0), "c": ["a"] * rows})
    current = pd.DataFrame({"same": np.full(rows, 7.0), "moved": np.full(rows, 8.0), "c": ["a"] * rows})
    report = compare(reference, current, {"same": "numeric", "moved": "numeric", "c": "categorical"})
    assert report.column("same").drifted is False and report.column("c").drifted is False
    assert report.column("moved").drifted is True
    _assert_clean(report)


def test_a_constant_reference_against_a_spread_current() -> None:
    reference = pd.DataFrame({"x": np.zeros(5000)})
    current = pd.DataFrame({"x": np.random.default_rng(2).normal(size=5000)})
    x = compare(reference, current, {"x": "numeric"}).column("x")
    assert x.drifted is True and x.score is not None and math.isfinite(x.score)


def test_all_missing_columns() -> None:
    rows = 300
    values = np.random.default_rng(3).normal(size=rows)
    reference = pd.DataFrame({"both": np.full(rows, np.nan), "gone": values, "back": np.full(rows, np.nan)})
    current = pd.DataFrame({"both": np.full(rows, np.nan), "gone": np.full(rows, np.nan), "back": values})
    report = compare(reference, current, {"both": "numeric", "gone": "numeric", "back": "numeric"})
    both, gone, back = report.column("both"), report.column("gone"), report.column("back")
    assert (both.test, both.score, both.drifted) == ("none", 0.0, False)
    assert gone.test == "missing" and gone.drifted and gone.missing_surge and gone.score == 1.0
    assert back.test == "presence" and back.drifted and back.score == 1.0
    _assert_clean(report)


def test_a_column_absent_from_the_window_is_all_missing() -> None:
    reference = pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b"] * 50})
    current = pd.DataFrame({"x": np.arange(100.0)})
    c = compare(reference, current, {"x": "numeric", "c": "categorical"}).column("c")
    assert c.test == "missing" and c.drifted and c.current_missing_share == 1.0


def test_unseen_categories_only() -> None:
    reference = pd.DataFrame({"c": ["a", "b", "c"] * 100})
    current = pd.DataFrame({"c": ["x", "y"] * 150})
    c = compare(reference, current, {"c": "categorical"}).column("c")
    assert c.drifted and set(c.unseen_categories) == {"x", "y"} and c.unseen_share == 1.0
    assert c.p_value is not None and c.p_value < 1e-10  # homogeneity: finite, not p = 0 from a zero expected


def test_mixed_types_in_a_categorical_column_are_compared_as_text() -> None:
    reference = pd.DataFrame({"c": [1, 2, 3] * 100})
    current = pd.DataFrame({"c": ["1", "2", "3"] * 100})
    c = compare(reference, current, {"c": "categorical"}).column("c")
    assert c.unseen_categories == [] and c.drifted is False


def test_infinities_count_as_missing_and_strings_in_numbers_are_coerced() -> None:
    reference = pd.DataFrame({"x": np.r_[np.arange(200.0), [np.inf, -np.inf]]})
    current = pd.DataFrame({"x": [str(v) for v in np.arange(200)] + ["n/a", "oops"]})
    x = compare(reference, current, {"x": "numeric"}).column("x")
    assert x.drifted is False and x.reference_missing_share == x.current_missing_share == 2 / 202
    _assert_clean(compare(reference, current, {"x": "numeric"}))


def test_tiny_windows_with_the_minimum_lowered_still_answer() -> None:
    reference = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    current = pd.DataFrame({"x": [3.0], "c": ["c"]})
    report = compare(reference, current, {"x": "numeric", "c": "categorical"}, DriftOptions(min_rows=1))
    assert report.dataset.status == "ok"
    _assert_clean(report)


def test_nullable_and_categorical_dtypes() -> None:
    reference = pd.DataFrame(
        {"i": pd.array([1, 2, None, 4] * 50, dtype="Int64"), "k": pd.Categorical(["a", "b"] * 100)}
    )
    current = pd.DataFrame(
        {"i": pd.array([1, 2, 3, None] * 50, dtype="Int64"), "k": pd.Categorical(["a", "b", "c", "a"] * 50)}
    )
    report = compare(reference, current, {"i": "numeric", "k": "categorical"})
    assert report.column("k").unseen_categories == ["c"]
    assert report.column("i").reference_missing_share == 0.25
    _assert_clean(report)


def test_time_columns_declared_numeric_are_compared_in_seconds() -> None:
    start = pd.Timestamp("2026-01-01", tz="UTC")
    reference = pd.DataFrame(
        {
            "t": start + pd.to_timedelta(np.arange(300), unit="h"),
            "d": pd.to_timedelta(np.arange(300), unit="s"),
        }
    )
    current = pd.DataFrame(
        {
            "t": start + pd.to_timedelta(np.arange(300) + 2000, unit="h"),
            "d": pd.to_timedelta(np.arange(300), unit="s"),
        }
    )
    current.loc[0, "t"] = pd.NaT
    report = compare(reference, current, {"t": "numeric", "d": "numeric"})
    assert report.column("t").drifted and not report.column("d").drifted
    assert report.column("t").current_missing_share == pytest.approx(1 / 300)
    _assert_clean(report)


def test_unhashable_values_in_a_categorical_column_are_compared_as_text() -> None:
    reference = pd.DataFrame({"c": [[1, 2], {"a": 1}, None] * 100})
    current = pd.DataFrame({"c": [[1, 2], [3], None] * 100})
    c = compare(reference, current, {"c": "categorical"}).column("c")
    assert c.unseen_categories == ["[3]"] and c.drifted
    assert c.reference_missing_share == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "values",
    [["b", None, "a", "b", "", "a", "b"], [None, None], [], ["x"] * 5],
    ids=["mixed", "all missing", "empty", "one category"],
)
def test_arrow_strings_are_counted_as_the_same_strings_as_objects(values: list[str | None]) -> None:
    from mlcycle.monitoring.profile import categorical_side

    arrow = categorical_side(pd.Series(values, dtype=pd.StringDtype("pyarrow")))
    plain = categorical_side(pd.Series(values, dtype=object))
    assert list(arrow.categories) == list(plain.categories)  # first-seen order on both paths
    assert arrow.counts.tolist() == plain.counts.tolist()
    assert (arrow.rows, arrow.missing) == (plain.rows, plain.missing)
