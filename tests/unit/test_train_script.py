"""pipelines/train.py under the SageMaker container contract, and inference.py on its artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from infra.bundling import SOURCEDIR_ARCHIVE, SourceDirBundle
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.training_sets import split
from tests.models import SERVING_CODE

REPO = Path(__file__).resolve().parents[2]


def _job(tmp: Path, settings: Settings, frame_rows: int = 1500) -> tuple[dict[str, str], Path]:
    # the job's code dir is the SageMaker source bundle, extracted as the container does
    code = tmp / "code"
    code.mkdir()
    SourceDirBundle().write(tmp)
    with tarfile.open(tmp / SOURCEDIR_ARCHIVE) as archive:
        archive.extractall(code, filter="data")
    train, test = split(churn.generate(frame_rows, seed=5), settings.problem)
    for name, part in (("train", train), ("test", test)):
        (tmp / "input" / name).mkdir(parents=True)
        part.to_parquet(tmp / "input" / name / "data.parquet")
    env = {
        "SM_MODEL_DIR": str(tmp / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp / "output" / "data"),
        "SM_OUTPUT_DIR": str(tmp / "output"),
        "SM_CHANNEL_TRAIN": str(tmp / "input" / "train"),
        "SM_CHANNEL_TEST": str(tmp / "input" / "test"),
        "SM_HPS": json.dumps(
            {
                "mlcycle_problem": settings.problem.model_dump_json(),
                "mlcycle_tests": settings.model_tests.model_dump_json(),
            }
        ),
    }
    (tmp / "model").mkdir()
    return env, code


def _run(code: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py"],
        cwd=code,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_train_writes_model_code_and_evaluation(tmp_path: Path, settings: Settings) -> None:
    env, code = _job(tmp_path, settings)
    done = _run(code, env)
    assert done.returncode == 0, done.stderr
    model = tmp_path / "model"
    assert {p.name for p in model.iterdir()} == {"model.joblib", "schema.json", "code"}
    # the model and its inference code only: the container's entry point and the modules it imports
    assert sorted(p.name for p in (model / "code").iterdir()) == SERVING_CODE
    metrics = json.loads((tmp_path / "output" / "data" / "evaluation.json").read_text())["metrics"]
    assert metrics["roc_auc"] > 0.75
    assert json.loads((tmp_path / "output" / "data" / "pre_training.json").read_text())["passed"]

    # the artifact serves through the inference handlers, as the serving container would call them: the
    # code dir on sys.path, inference.py a top-level module, its siblings imported from beside it
    sys.path.insert(0, str(model / "code"))
    try:
        import inference  # type: ignore[import-not-found]
        import inference_codecs  # type: ignore[import-not-found]

        assert {Path(sys.modules[p.removesuffix(".py")].__file__ or "").parent for p in SERVING_CODE} == {
            model / "code"
        }
        loaded = inference.model_fn(str(model))
        rows = churn.generate(3, seed=9)[list(settings.problem.features)].to_csv(header=False, index=False)
        body, content_type = inference.transform_fn(loaded, rows, "text/csv", "application/json")
        answer = json.loads(body)
        assert (
            content_type == "application/json"
            and len(answer["predictions"]) == 3
            and len(answer["probabilities"][0]) == 2
        )
        with pytest.raises(inference_codecs.ClientError, match="row 1 has 2 values; the model takes 7"):
            inference.transform_fn(loaded, "1,2\n", "text/csv", "application/json")
    finally:
        sys.path.remove(str(model / "code"))
        for name in SERVING_CODE:
            sys.modules.pop(name.removesuffix(".py"), None)


def test_train_failure_writes_the_reason(tmp_path: Path, settings: Settings) -> None:
    env, code = _job(tmp_path, settings)
    frame = churn.generate(300, seed=6).assign(churned=0)  # other customers than the test channel
    frame.to_parquet(tmp_path / "input" / "train" / "data.parquet")
    done = _run(code, env)
    assert done.returncode == 1
    # the pre-training tests refuse it before fitting, and the reason names the failed check
    assert (tmp_path / "output" / "failure").read_text() == (
        "ModelTestsFailed: pre_training tests: 1 of 4 checks failed: label_balance: "
        "target 'churned' has a single class"
    )
