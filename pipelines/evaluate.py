"""SageMaker processing entry point: evaluate a trained model and run the post-training tests.

Run in the scikit-learn container as ``python3 evaluate.py --model DIR --train DIR --test DIR --run DIR
--output DIR`` (``/opt/ml/processing/...`` paths). Inputs: ``model.tar.gz`` (the training job's
artifact), the train and test sets (Parquet), and ``run.json`` (the problem, the model-test settings,
the quality gate and the champion's metrics, written by the pipeline's validation step). Writes to
``--output``:

- ``evaluation.json``: metrics, the post-training test report and the baseline statistics;
- ``model_tests.json``: the report alone; ``baseline.json``: per-feature sketches of the training set
  (registered with the model);
- ``reference.parquet``: the drift monitors' reference: a sample of the training set's features (at most
  :data:`REFERENCE_ROWS` rows) with the model's ``prediction`` and ``probability`` for them and the true
  ``label``, so monitors test serving windows, predictions and segments against what the model learned from.

When the run carries the monitors' recent labelled window (``recent.parquet`` next to ``run.json``: the
features as served, ``inference_id``, ``label``, and the champion's captured ``score``/``prediction``),
the challenger is scored on those rows too (less any whose key is in its training set) and the champion's
metrics come from its captured answers on the same rows (``recent`` in ``evaluation.json``). With at least
``min_labelled_rows`` such rows the checks against the champion compare these (``champion_comparison``
says which basis was used); the quality gate stays on the test split.

Failed tests are a result, not an error: the job completes and the pipeline's gate reads the report.
An error writes its reason to ``--failure-file`` (SageMaker's FailureReason) and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import traceback
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the source dir holds the mlcycle package

from mlcycle import modeling, quality  # noqa: E402


def _arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("model", "train", "test", "run", "output"):
        parser.add_argument(f"--{name}", required=True, type=Path)
    parser.add_argument("--failure-file", type=Path, default=Path("/opt/ml/output/failure"))
    return parser.parse_args(argv)


def read_frame(directory: Path) -> pd.DataFrame:
    files = sorted(p for p in directory.rglob("*.parquet") if p.is_file())
    if not files:
        raise modeling.TrainingDataError(f"no Parquet files under {directory}")
    return pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)


def load_model(directory: Path) -> Any:
    """The estimator inside ``model.tar.gz`` (or an already extracted ``model.joblib``)."""
    joblib_file = directory / "model.joblib"
    if not joblib_file.exists():
        archives = sorted(directory.glob("*.tar.gz"))
        if not archives:
            raise FileNotFoundError(f"no model.tar.gz or model.joblib in {directory}")
        target = Path(tempfile.mkdtemp(prefix="model-"))
        with tarfile.open(archives[0]) as tar:
            tar.extractall(target, filter="data")
        joblib_file = target / "model.joblib"
    return joblib.load(joblib_file)


def evaluate(
    model: Any,
    train: pd.DataFrame,
    test: pd.DataFrame,
    run: dict[str, Any],
    recent: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Metrics, the post-training report and the baselines of one model (and, given the recent labelled
    window, the challenger and the champion on it)."""
    problem, tests = run["problem"], run["model_tests"]
    champion = run.get("champion") or {}
    metrics = modeling.evaluate(model, test, problem)
    on_recent = None if recent is None else recent_evaluation(model, train, recent, problem)
    basis, comparison = champion_basis(
        metrics, champion.get("metrics"), on_recent, problem, int(run.get("min_labelled_rows") or 1)
    )
    report = quality.post_training_tests(
        model,
        test,
        problem,
        tests,
        metrics=metrics,
        champion_metrics=champion.get("metrics"),
        min_primary_metric=run.get("min_primary_metric"),
        champion_basis=basis,
    )
    return {
        "metrics": metrics,
        "problem": {k: problem[k] for k in ("task", "target", "primary_metric")},
        "champion": champion or None,
        **({"recent": on_recent} if on_recent is not None else {}),
        "champion_comparison": comparison,
        "model_tests": report.to_dict(),
        "baseline": quality.feature_baselines(train, problem),
    }


# ---- the recent labelled window ------------------------------------------------------------------------

RECENT_FILE = "recent.parquet"
RECENT_BASIS, TEST_BASIS = "recent_window", "registered_test_metrics"


def read_recent(run_dir: Path) -> pd.DataFrame | None:
    """The recent labelled window the validation step copied next to the run document, if any."""
    found = sorted(p for p in run_dir.rglob(RECENT_FILE) if p.is_file())
    if not found:
        return None
    frame: pd.DataFrame = pd.read_parquet(found[0])
    return frame


def recent_evaluation(
    model: Any, train: pd.DataFrame, recent: pd.DataFrame, problem: dict[str, Any]
) -> dict[str, Any]:
    """The challenger's and the champion's metrics on the same recent rows: those with a label and a
    champion answer, less any whose key (the inference id) is in the challenger's training set."""
    rows, in_train = unseen_rows(recent, train, problem)
    rows = answered_rows(rows, problem)
    versions = sorted({int(v) for v in rows.get("model_version", pd.Series(dtype=float)).dropna()})
    out: dict[str, Any] = {"rows": len(rows), "in_train": in_train, "model_versions": versions}
    if rows.empty:
        return out | {"challenger": {}, "champion": {}}
    frame = rows.assign(**{problem["target"]: rows["label"].to_numpy()})
    return out | {
        "challenger": modeling.evaluate(model, frame, problem),
        "champion": champion_metrics(model, frame, problem),
    }


def unseen_rows(
    recent: pd.DataFrame, train: pd.DataFrame, problem: dict[str, Any]
) -> tuple[pd.DataFrame, int]:
    """``recent`` without the rows whose inference id is a key of the training set (no leakage)."""
    key = problem["dataset"].get("key")
    if not key or key not in train.columns:
        return recent, 0
    seen = recent["inference_id"].astype(str).isin(set(train[key].astype(str)))
    return recent[~seen.to_numpy()].reset_index(drop=True), int(seen.sum())


def answered_rows(recent: pd.DataFrame, problem: dict[str, Any]) -> pd.DataFrame:
    """The rows with a label and an answer of the champion to measure it by."""
    answer = "score" if problem["task"] == "regression" else "prediction"
    labelled = pd.to_numeric(recent["label"], errors="coerce")
    answered = pd.to_numeric(recent[answer], errors="coerce")
    keep = np.isfinite(labelled.to_numpy(dtype=float)) & np.isfinite(answered.to_numpy(dtype=float))
    kept: pd.DataFrame = recent.loc[keep].reset_index(drop=True)
    return kept


def champion_metrics(model: Any, frame: pd.DataFrame, problem: dict[str, Any]) -> dict[str, float]:
    """The test split's metrics of the champion's captured answers (its positive-class probability is the
    ``score`` of a binary classifier; a regressor's ``score`` is its prediction)."""
    y = frame["label"].to_numpy(dtype=float)
    score = pd.to_numeric(frame["score"], errors="coerce").to_numpy(dtype=float)
    if problem["task"] == "regression":
        return modeling.metrics_of(y, score, problem)
    predicted = pd.to_numeric(frame["prediction"], errors="coerce").to_numpy(dtype=float).astype("int64")
    binary = len(getattr(model, "classes_", ())) == 2
    positive = score if binary and bool(np.isfinite(score).all()) else None
    return modeling.metrics_of(y, predicted, problem, positive=positive, binary=binary)


def champion_basis(
    metrics: dict[str, float],
    champion: dict[str, float] | None,
    recent: dict[str, Any] | None,
    problem: dict[str, Any],
    min_rows: int,
) -> tuple[quality.ChampionBasis, dict[str, Any]]:
    """What the checks against the champion compare: both models on the recent rows when there are enough
    of them and the primary metric is defined on them; else the test split against the registered
    metrics."""
    primary = problem["primary_metric"]
    comparison: dict[str, Any] = {"basis": TEST_BASIS, "min_rows": min_rows}
    if recent is None:
        return quality.ChampionBasis(metrics, champion), comparison
    comparison["rows"] = recent["rows"]
    if recent["rows"] < min_rows:
        reason = f"{recent['rows']} recent rows, fewer than min_labelled_rows {min_rows}"
    elif primary not in recent["challenger"] or primary not in recent["champion"]:
        reason = f"{primary} is undefined on the recent rows"
    else:
        name = f"recent labelled window ({recent['rows']} rows)"
        basis = quality.ChampionBasis(recent["challenger"], recent["champion"], name)
        return basis, comparison | {"basis": RECENT_BASIS}
    return quality.ChampionBasis(metrics, champion), comparison | {"reason": reason}


REFERENCE_ROWS = 20_000


def reference_sample(model: Any, train: pd.DataFrame, problem: dict[str, Any]) -> pd.DataFrame:
    """Features, prediction, probability (binary classifiers: the positive class's) and label of a
    seeded sample of the training set: what serving windows are compared with."""
    sample = train.sample(n=min(len(train), REFERENCE_ROWS), random_state=problem.get("seed", 42))
    features = modeling.features_frame(sample, problem)
    frame = features.reset_index(drop=True)
    frame["prediction"] = model.predict(features)
    frame["probability"] = float("nan")
    if problem["task"] == "classification":
        proba = model.predict_proba(features)
        if proba.shape[1] == 2:
            frame["probability"] = proba[:, 1]
    frame["label"] = sample[problem["target"]].to_numpy()
    return frame


def write_outputs(evaluation: dict[str, Any], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
    (output / "model_tests.json").write_text(json.dumps(evaluation["model_tests"], indent=2))
    (output / "baseline.json").write_text(json.dumps(evaluation["baseline"], indent=2))


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    try:
        run = json.loads(next(args.run.rglob("*.json")).read_text())
        train, test = read_frame(args.train), read_frame(args.test)
        model = load_model(args.model)
        evaluation = evaluate(model, train, test, run, read_recent(args.run))
        write_outputs(evaluation, args.output)
        reference_sample(model, train, run["problem"]).to_parquet(
            args.output / "reference.parquet", index=False
        )
        print(f"metrics: {json.dumps(evaluation['metrics'])}", flush=True)
        print(f"champion comparison: {json.dumps(evaluation['champion_comparison'])}", flush=True)
        print(evaluation["model_tests"]["summary"], flush=True)
    except Exception as exc:
        args.failure_file.parent.mkdir(parents=True, exist_ok=True)
        args.failure_file.write_text(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main()
