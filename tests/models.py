"""A small model of the example problem, packaged as the training job packages it, for serving tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib

from mlcycle import modeling
from mlcycle.config import ModelSpec, Settings
from mlcycle.example import churn

REPO = Path(__file__).resolve().parents[1]
#: The model's inference code, in ``code/`` of model.tar.gz: pipelines/inference.py and the modules it
#: imports (pipelines/train.py copies them; tests/infra/test_bundling.py checks that this is the list).
SERVING_CODE = ["inference.py", "inference_codecs.py", "inference_compiled.py"]

ROW = {
    "tenure_months": 12,
    "monthly_charges": 70.5,
    "support_calls": 2,
    "age": 40,
    "contract": "one-year",
    "payment_method": "card",
    "region": "north",
}
CSV_ROW = ",".join(str(v) for v in ROW.values())


def example_model_dir(
    tmp: Path, settings: Settings, family: str = "hist_gradient_boosting", task: str = "classification"
) -> Path:
    problem = settings.problem.model_copy(
        update={
            "model": ModelSpec(
                family=family, hyperparameters={"max_iter": 30} if family.startswith("hist") else {}
            ),
            "task": task,
        }  # type: ignore[arg-type]
    ).model_dump(mode="json")
    frame = churn.generate(800, seed=3)
    if task == "regression":
        frame = frame.assign(churned=frame["monthly_charges"] * 0.1 + frame["support_calls"])
    pipeline = modeling.train(frame, problem)
    tmp.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, tmp / "model.joblib")
    schema = {"features": modeling.feature_schema(problem), "target": problem["target"], "task": task}
    (tmp / "schema.json").write_text(json.dumps(schema))
    (tmp / "code").mkdir(exist_ok=True)
    for name in SERVING_CODE:
        shutil.copy(REPO / "pipelines" / name, tmp / "code" / name)
    return tmp
