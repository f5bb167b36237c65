"""pipelines/evaluate.py with the recent labelled window: the challenger and the champion measured on the
same recent rows (none the challenger trained on), and the champion checks compared on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from mlcycle import modeling
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.training_sets import split
from pipelines import evaluate


@pytest.fixture(scope="module")
def trained(settings: Settings) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    problem = settings.problem.model_dump(mode="json")
    train, test = split(churn.generate(1500, seed=5), settings.problem)
    return modeling.train(train, problem), train, test


def _recent(settings: Settings, train: pd.DataFrame, rows: int = 300, leaked: int = 40) -> pd.DataFrame:
    """Served rows as the recent window holds them: new customers and some the challenger trained on,
    scored by a champion that barely looks at them (a noisy score)."""
    served = pd.concat([churn.generate(rows, seed=77), train.head(leaked)], ignore_index=True)
    score = np.random.default_rng(3).uniform(0.05, 0.95, len(served)).round(4)
    frame = served[list(settings.problem.features)].copy()
    frame["inference_id"] = served["customer_id"].astype(str)
    frame["label"] = served["churned"].astype("int64")
    frame["score"], frame["prediction"] = score, (score >= 0.5).astype(float)
    frame["model_version"], frame["window_id"] = 3, "2026-11-28T10:00:00Z"
    return frame


def _run(settings: Settings, champion_auc: float, min_rows: int = 50) -> dict[str, Any]:
    return {
        "problem": json.loads(settings.problem.model_dump_json()),
        "model_tests": json.loads(settings.model_tests.model_dump_json()),
        "min_primary_metric": 0.7,
        "champion": {"version": 3, "arn": "arn", "metrics": {"roc_auc": champion_auc}},
        "min_labelled_rows": min_rows,
    }


def test_both_models_are_measured_on_the_same_unseen_recent_rows(
    settings: Settings, trained: tuple[Any, pd.DataFrame, pd.DataFrame]
) -> None:
    model, train, test = trained
    recent = _recent(settings, train)
    # GIVEN a champion registered with a test AUC the challenger does not reach
    run = _run(settings, champion_auc=0.99)
    # WHEN the challenger is evaluated with the recent window
    evaluation = evaluate.evaluate(model, train, test, run, recent)
    # THEN the rows it trained on are left out, and both sides are measured on the rest
    on_recent = evaluation["recent"]
    assert (on_recent["rows"], on_recent["in_train"], on_recent["model_versions"]) == (300, 40, [3])
    unseen = recent.iloc[:300]
    auc = metrics.roc_auc_score(unseen["label"], unseen["score"])
    assert on_recent["champion"]["roc_auc"] == pytest.approx(auc)
    assert on_recent["champion"]["rows"] == on_recent["challenger"]["rows"] == 300
    expected = modeling.evaluate(model, unseen.assign(churned=unseen["label"]), run["problem"])
    assert on_recent["challenger"] == pytest.approx(expected)
    # AND the champion check compares them there (the challenger beats the noisy champion), not the test
    # split against the registered 0.99; the quality gate stays on the test split
    assert evaluation["champion_comparison"] == {"basis": "recent_window", "min_rows": 50, "rows": 300}
    checks = {c["name"]: c for c in evaluation["model_tests"]["checks"]}
    assert checks["vs_champion:roc_auc"]["passed"], checks["vs_champion:roc_auc"]["detail"]
    assert "recent labelled window (300 rows)" in checks["vs_champion:roc_auc"]["detail"]
    assert checks["threshold:roc_auc"]["value"] == evaluation["metrics"]["roc_auc"]


def test_too_few_recent_rows_keep_the_registered_comparison(
    settings: Settings, trained: tuple[Any, pd.DataFrame, pd.DataFrame]
) -> None:
    model, train, test = trained
    evaluation = evaluate.evaluate(
        model, train, test, _run(settings, 0.99, min_rows=500), _recent(settings, train)
    )
    assert evaluation["recent"]["rows"] == 300
    comparison = evaluation["champion_comparison"]
    assert (
        comparison["basis"] == "registered_test_metrics"
        and "fewer than min_labelled_rows 500" in comparison["reason"]
    )
    checks = {c["name"]: c for c in evaluation["model_tests"]["checks"]}
    assert not checks["vs_champion:roc_auc"]["passed"]  # the test split against the registered 0.99
    # AND without a recent window nothing changes
    plain = evaluate.evaluate(model, train, test, _run(settings, 0.99))
    assert "recent" not in plain and plain["champion_comparison"] == {
        "basis": "registered_test_metrics",
        "min_rows": 50,
    }


def test_regression_champion_is_measured_by_its_captured_predictions(settings: Settings) -> None:
    problem = {"task": "regression", "target": "y", "primary_metric": "r2"}
    frame = pd.DataFrame({"label": [1.0, 2.0, 3.0, 4.0], "score": [1.5, 2.0, 2.5, 4.0], "prediction": np.nan})
    got = evaluate.champion_metrics(None, evaluate.answered_rows(frame, problem), problem)
    assert got["r2"] == pytest.approx(metrics.r2_score(frame["label"], frame["score"])) and got["rows"] == 4.0


def test_the_job_reads_recent_parquet_next_to_the_run_document(
    tmp_path: Path, settings: Settings, trained: tuple[Any, pd.DataFrame, pd.DataFrame]
) -> None:
    model, train, test = trained
    for name, part in (("train", train), ("test", test)):
        (tmp_path / name).mkdir()
        part.to_parquet(tmp_path / name / "data.parquet", index=False)
    (tmp_path / "model").mkdir()
    joblib.dump(model, tmp_path / "model" / "model.joblib")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps(_run(settings, 0.99)))
    _recent(settings, train).to_parquet(tmp_path / "run" / evaluate.RECENT_FILE, index=False)
    args = [f"--{n}={tmp_path / n}" for n in ("model", "train", "test", "run")]
    evaluate.main([*args, f"--output={tmp_path / 'out'}", f"--failure-file={tmp_path / 'failure'}"])
    written = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert written["recent"]["rows"] == 300 and written["champion_comparison"]["basis"] == "recent_window"
