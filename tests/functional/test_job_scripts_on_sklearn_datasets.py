"""pipelines/train.py then pipelines/evaluate.py, run as the containers run them, on scikit-learn's own
datasets: breast cancer (classification) and diabetes (regression). Nothing here is the churn example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn import datasets

from infra.bundling import SourceDirBundle
from infra.training_jobs import EVALUATE_BOOTSTRAP
from mlcycle.config import ColumnSpec, DatasetContract, ModelSpec, ModelTestsSettings, ProblemConfig

REPO = Path(__file__).resolve().parents[2]


def _problem(name: str, frame: pd.DataFrame, target: str, task: str, metric: str) -> ProblemConfig:
    features = tuple(c for c in frame.columns if c not in (target, "row_id"))
    columns = (
        ColumnSpec(name="row_id", type="string"),
        *(ColumnSpec(name=f, type="float") for f in features),
        ColumnSpec(name=target, type="int" if task == "classification" else "float"),
    )
    return ProblemConfig(
        task=task,  # type: ignore[arg-type]
        dataset=DatasetContract(name=name, key="row_id", columns=columns),
        target=target,
        features=features,
        model=ModelSpec(hyperparameters={"max_iter": 100}),
        primary_metric=metric,  # type: ignore[arg-type]
    )


def _dataset(kind: str) -> tuple[pd.DataFrame, ProblemConfig]:
    if kind == "breast_cancer":
        bunch = datasets.load_breast_cancer(as_frame=True)
        frame = bunch.frame.rename(columns=lambda c: c.replace(" ", "_"))
        problem = _problem("breast_cancer", frame, "target", "classification", "roc_auc")
    else:
        frame = datasets.load_diabetes(as_frame=True, scaled=False).frame
        problem = _problem("diabetes", frame, "target", "regression", "r2")
    return frame.assign(row_id=[f"r{i}" for i in range(len(frame))]), problem


def _layout(tmp: Path, frame: pd.DataFrame) -> Path:
    """The source dir as the containers get it, and the train/test sets (every 4th row to test)."""
    code = tmp / "code"
    code.mkdir()
    SourceDirBundle(source_root=REPO).write(code)
    is_test = frame.index % 4 == 0
    for name, part in (("train", frame[~is_test]), ("test", frame[is_test])):
        (tmp / name).mkdir()
        part.to_parquet(tmp / name / "data.parquet", index=False)
    return code


def _train(tmp: Path, code: Path, problem: ProblemConfig, tests: ModelTestsSettings) -> None:
    src = tmp / "train-src"
    with tarfile.open(next(code.glob("*.gz"))) as tar:
        tar.extractall(src, filter="data")
    (tmp / "model").mkdir()
    env = {
        "SM_MODEL_DIR": str(tmp / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp / "output" / "data"),
        "SM_OUTPUT_DIR": str(tmp / "output"),
        "SM_CHANNEL_TRAIN": str(tmp / "train"),
        "SM_CHANNEL_TEST": str(tmp / "test"),
        "SM_HPS": json.dumps(
            {"mlcycle_problem": problem.model_dump_json(), "mlcycle_tests": tests.model_dump_json()}
        ),
    }
    done = subprocess.run(
        [sys.executable, "train.py"],
        cwd=src,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(tmp / "model.tar.gz", "w:gz") as tar:  # what SageMaker uploads
        for child in (tmp / "model").iterdir():
            tar.add(child, arcname=child.name)
    (tmp / "model-input").mkdir()
    (tmp / "model.tar.gz").rename(tmp / "model-input" / "model.tar.gz")


def _evaluate(
    tmp: Path, code: Path, problem: ProblemConfig, tests: ModelTestsSettings, gate: float
) -> dict[str, Any]:
    (tmp / "run").mkdir()
    run = {
        "problem": json.loads(problem.model_dump_json()),
        "model_tests": json.loads(tests.model_dump_json()),
        "min_primary_metric": gate,
        "champion": None,
    }
    (tmp / "run" / "run.json").write_text(json.dumps(run))
    args = [f"--{n}={tmp / d}" for n, d in (("model", "model-input"), ("train", "train"), ("test", "test"))]
    args += [f"--run={tmp / 'run'}", f"--output={tmp / 'evaluation'}", f"--failure-file={tmp / 'failure'}"]
    # The processing job's entry point, exactly as the state machine declares it.
    argv = [sys.executable, "-c", EVALUATE_BOOTSTRAP, str(code), "evaluate.py", *args]
    done = subprocess.run(
        argv, cwd=tmp, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""}, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    evaluation: dict[str, Any] = json.loads((tmp / "evaluation" / "evaluation.json").read_text())
    assert json.loads((tmp / "evaluation" / "baseline.json").read_text()) == evaluation["baseline"]
    return evaluation


@pytest.mark.parametrize(
    ("kind", "metric", "gate"), [("breast_cancer", "roc_auc", 0.95), ("diabetes", "r2", 0.2)]
)
def test_train_and_evaluate_a_real_dataset(tmp_path: Path, kind: str, metric: str, gate: float) -> None:
    # GIVEN a scikit-learn dataset as a problem of its own, with generic model tests
    frame, problem = _dataset(kind)
    tests = ModelTestsSettings(min_rows=100)
    code = _layout(tmp_path, frame)
    # WHEN the training job, then the evaluation job run
    _train(tmp_path, code, problem, tests)
    evaluation = _evaluate(tmp_path, code, problem, tests, gate)
    # THEN the pre-training tests passed, the model clears the gate, and the post-training report says so
    pre = json.loads((tmp_path / "output" / "data" / "pre_training.json").read_text())
    assert pre["passed"] and {c["name"] for c in pre["checks"]} >= {"schema", "entity_overlap"}
    assert evaluation["metrics"][metric] > gate
    report = evaluation["model_tests"]
    assert report["passed"], report["summary"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks[f"threshold:{metric}"]["passed"]
    assert checks["calibration_error"]["skipped"] is (kind == "diabetes")
    assert set(evaluation["baseline"]["features"]) == set(problem.features)
