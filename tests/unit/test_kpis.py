"""Business KPIs per model version: aggregates over matching rows, breaches, unlabelled rows, bad queries."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlcycle.config import KpiSpec, MonitoringSettings
from mlcycle.monitoring import kpis, outcomes


def _joined() -> outcomes.Joined:
    window = pd.DataFrame(
        {
            "monthly_charges": [50.0, 80.0, 120.0, 30.0, 70.0, 90.0],
            "contract": [
                "month-to-month",
                "one-year",
                "month-to-month",
                "two-year",
                "one-year",
                "month-to-month",
            ],
            "prediction": [1, 0, 1, 0, 1, 1],
            "probability": [0.9, 0.2, 0.7, 0.1, 0.6, 0.8],
            "inference_id": ["a", "b", "c", "d", "e", None],
            "model_version": [1, 1, 1, 2, 2, 2],
        }
    )
    truth = pd.DataFrame({"inference_id": ["a", "b", "c", "d", "e"], "label": [1, 0, 0, 0, 1]})
    return outcomes.join(window, truth)


def test_churn_rate_among_flagged_customers_per_model_version() -> None:
    spec = KpiSpec(
        name="flagged_churn_rate", aggregate="rate", column="label", where="prediction == 1", min=0.6
    )
    v1, v2 = kpis.evaluate(_joined(), [spec])
    # version 1: a (churned) and c (stayed) were flagged; version 2: e (churned) and an unlabelled row
    assert (v1.model_version, v1.value, v1.rows, v1.breached) == (1, 0.5, 2, True)
    assert (v2.model_version, v2.value, v2.rows, v2.breached) == (2, 1.0, 1, False)


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        (KpiSpec(name="revenue", aggregate="sum", column="monthly_charges"), [250.0, 190.0]),
        (KpiSpec(name="avg_charge", aggregate="mean", column="monthly_charges", max=60), [250 / 3, 190 / 3]),
        (
            KpiSpec(name="flagged", aggregate="count", column="prediction", where="prediction == 1"),
            [2.0, 2.0],
        ),
        (
            KpiSpec(
                name="monthly_flagged",
                aggregate="rate",
                column="prediction",
                where="contract == 'month-to-month'",
            ),
            [1.0, 1.0],
        ),
    ],
)
def test_aggregates(spec: KpiSpec, values: list[float]) -> None:
    results = kpis.evaluate(_joined(), [spec])
    assert [r.value for r in results] == pytest.approx(values)
    if spec.max is not None:
        assert [r.breached for r in results] == [True, True]
    else:
        assert [r.breached for r in results] == [False, False]


def test_no_matching_rows_is_no_verdict_and_json_without_nan() -> None:
    specs = [
        KpiSpec(
            name="big_spenders_churn",
            aggregate="mean",
            column="label",
            where="monthly_charges > 1000",
            min=0.1,
        ),
        KpiSpec(
            name="big_spenders", aggregate="count", column="label", where="monthly_charges > 1000", min=1
        ),
    ]
    mean, _, count, _ = kpis.evaluate(_joined(), specs)
    assert (mean.value, mean.rows, mean.breached) == (None, 0, None)
    assert (count.value, count.breached) == (0.0, True)
    json.loads(mean.to_json())


def test_settings_kpis_and_an_empty_window() -> None:
    settings = MonitoringSettings(kpis=(KpiSpec(name="churn", column="label"),))
    empty = outcomes.join(
        _joined().frame.iloc[:0].drop(columns=["label"]), pd.DataFrame(columns=["inference_id", "label"])
    )
    assert kpis.evaluate(empty, settings.kpis) == []
    no_versions = outcomes.join(
        pd.DataFrame({"prediction": [1], "inference_id": ["a"]}),
        pd.DataFrame({"inference_id": ["a"], "label": [1]}),
    )
    [result] = kpis.evaluate(no_versions, settings.kpis)
    assert (result.model_version, result.value) == (None, 1.0)


def test_truthiness_of_text_columns() -> None:
    frame = pd.DataFrame(
        {
            "answer": ["yes", "no", "", "0", "True", np.nan],
            "prediction": 1,
            "model_version": 3,
            "inference_id": None,
        }
    )
    [result] = kpis.evaluate(
        outcomes.join(frame, pd.DataFrame(columns=["inference_id", "label"])),
        [KpiSpec(name="yes_rate", aggregate="rate", column="answer")],
    )
    assert (result.value, result.rows) == (pytest.approx(0.4), 5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            KpiSpec(name="bad_query", where="prediction ==== 1"),
            r"KPI 'bad_query': its where 'prediction ==== 1' fails",
        ),
        (KpiSpec(name="bad_column", where="tenure > 3"), r"KPI 'bad_column': its where 'tenure > 3' fails"),
        (KpiSpec(name="no_column", column="revenue"), r"KPI 'no_column': no column 'revenue'"),
        (
            KpiSpec(name="text_mean", aggregate="mean", column="contract"),
            r"KPI 'text_mean': mean of 'contract' needs numbers",
        ),
    ],
)
def test_bad_kpis_are_clear_errors_naming_the_kpi(spec: KpiSpec, message: str) -> None:
    with pytest.raises(kpis.KpiError, match=message):
        kpis.evaluate(_joined(), [spec])
