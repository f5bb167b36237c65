"""Inference handlers of a broken model: it loads and answers /ping, then fails every prediction."""

from pathlib import Path

import joblib


def model_fn(model_dir):
    return joblib.load(Path(model_dir, "model.joblib"))


def transform_fn(model, body, content_type, accept):
    raise RuntimeError("this model is broken on purpose (a test's challenger)")
