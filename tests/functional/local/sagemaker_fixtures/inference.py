"""SageMaker inference handlers for the test model (the contract of docs/architecture.md "Serving")."""

import io
import json
from pathlib import Path

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(Path(model_dir, "model.joblib"))


def input_fn(body, content_type):
    if content_type.startswith("text/csv"):
        return np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)
    if content_type.startswith("application/json"):
        return np.asarray(json.loads(body), dtype=float)
    raise ValueError(f"unsupported content type {content_type}")


def predict_fn(data, model):
    return {
        "predictions": model.predict(data).tolist(),
        "probabilities": model.predict_proba(data)[:, 1].tolist(),
    }


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
