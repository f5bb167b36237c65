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


def evaluate(model: Any, train: pd.DataFrame, test: pd.DataFrame, run: dict[str, Any]) -> dict[str, Any]:
    """Metrics, the post-training report and the baselines of one model."""
    problem, tests = run["problem"], run["model_tests"]
    champion = run.get("champion") or {}
    metrics = modeling.evaluate(model, test, problem)
    report = quality.post_training_tests(
        model,
        test,
        problem,
        tests,
        metrics=metrics,
        champion_metrics=champion.get("metrics"),
        min_primary_metric=run.get("min_primary_metric"),
    )
    return {
        "metrics": metrics,
        "problem": {k: problem[k] for k in ("task", "target", "primary_metric")},
        "champion": champion or None,
        "model_tests": report.to_dict(),
        "baseline": quality.feature_baselines(train, problem),
    }


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
        evaluation = evaluate(model, train, test, run)
        write_outputs(evaluation, args.output)
        reference_sample(model, train, run["problem"]).to_parquet(
            args.output / "reference.parquet", index=False
        )
        print(f"metrics: {json.dumps(evaluation['metrics'])}", flush=True)
        print(evaluation["model_tests"]["summary"], flush=True)
    except Exception as exc:
        args.failure_file.parent.mkdir(parents=True, exist_ok=True)
        args.failure_file.write_text(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main()
