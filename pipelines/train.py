"""SageMaker training entry point (scikit-learn container contract).

Reads the ``train`` and ``test`` channels (Parquet), runs the pre-training tests (hyperparameter
``mlcycle_tests``: the model-test settings; a failed test fails the job with the report's summary as its
reason), trains the configured scikit-learn pipeline, evaluates it on the test channel, and writes:
- ``SM_MODEL_DIR``: ``model.joblib``, ``schema.json`` and ``code/`` (``inference.py`` and its sibling
  modules ``inference_*.py``), everything the serving container needs;
- ``SM_OUTPUT_DATA_DIR/evaluation.json``: the test-set metrics; ``pre_training.json``: the test report;
- ``SM_OUTPUT_DIR/failure`` on error: SageMaker reports its text as the job's FailureReason.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from pathlib import Path

import joblib
import pandas as pd

HERE = Path(__file__).resolve().parent
#: The model's inference code: the container's entry point inference.py and the modules it imports.
SERVING_CODE = "inference*.py"
sys.path.insert(0, str(HERE))  # the source dir holds the mlcycle package

from mlcycle import modeling, quality  # noqa: E402
from mlcycle.quality.pre_training import DEFAULT_TESTS  # noqa: E402


def _hyperparameters() -> dict[str, object]:
    raw = json.loads(os.environ.get("SM_HPS", "{}"))
    return {k: (json.loads(v) if isinstance(v, str) and v[:1] in '{["' else v) for k, v in raw.items()}


def _read_channel(name: str) -> pd.DataFrame:
    directory = Path(os.environ[f"SM_CHANNEL_{name.upper()}"])
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    if not files:
        raise modeling.TrainingDataError(f"channel {name!r} is empty")
    return pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)


def _package(model: object, problem: dict[str, object], model_dir: Path) -> None:
    joblib.dump(model, model_dir / "model.joblib")
    schema = {
        "features": modeling.feature_schema(problem),
        "target": problem["target"],
        "task": problem["task"],
    }
    (model_dir / "schema.json").write_text(json.dumps(schema, indent=2))
    # The model and its inference code only: that code imports nothing of mlcycle, and of its own
    # directory only the files SERVING_CODE names (tests keep both so); the pipeline unpickles from
    # scikit-learn alone.
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    for source in sorted(HERE.glob(SERVING_CODE)):
        shutil.copy2(source, code / source.name)


def _pre_training_tests(
    train: pd.DataFrame, test: pd.DataFrame, problem: dict[str, object], tests: dict[str, object]
) -> quality.Report:
    report = quality.pre_training_tests(train, test, problem, tests)
    for check in report.checks:
        print(check.line(), flush=True)
    report.raise_for_failures()  # before fitting: a bad training set costs no training time
    return report


def main() -> None:
    hyperparameters = _hyperparameters()
    problem = hyperparameters["mlcycle_problem"]
    tests = hyperparameters.get("mlcycle_tests", DEFAULT_TESTS)
    assert isinstance(problem, dict), "hyperparameter mlcycle_problem must be a JSON object"
    assert isinstance(tests, dict), "hyperparameter mlcycle_tests must be a JSON object"
    train = _read_channel("train")
    test = _read_channel("test")
    pre_training = _pre_training_tests(train, test, problem, tests)
    print(f"training {problem['model']} on {len(train)} rows, testing on {len(test)}", flush=True)
    model = modeling.train(train, problem)
    evaluation = modeling.evaluate(model, test, problem)
    print(f"evaluation: {json.dumps(evaluation)}", flush=True)
    _package(model, problem, Path(os.environ["SM_MODEL_DIR"]))
    out = Path(os.environ["SM_OUTPUT_DATA_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    report = {"metrics": evaluation, "problem": {k: problem[k] for k in ("task", "target", "primary_metric")}}
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    (out / "pre_training.json").write_text(pre_training.to_json())


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        failure = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        sys.exit(1)
