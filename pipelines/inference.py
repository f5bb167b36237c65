"""SageMaker inference handlers (scikit-learn serving container contract).

``text/csv``: rows of feature values in the model's feature order, no header. ``application/json``:
``{"instances": [{feature: value, ...}, ...]}`` or a list of such records. The answer is JSON:
``{"predictions": [...], "probabilities": [[...], ...]}`` (probabilities for classifiers only).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

JSON = "application/json"
CSV = "text/csv"


class Model:
    def __init__(self, pipeline: Any, schema: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.schema = schema

    @property
    def features(self) -> list[str]:
        return list(self.schema["features"])


def model_fn(model_dir: str) -> Model:
    root = Path(model_dir)
    schema = json.loads((root / "schema.json").read_text())
    return Model(joblib.load(root / "model.joblib"), schema)


def input_fn(body: bytes | str, content_type: str) -> pd.DataFrame | list[Any]:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    if kind == CSV:
        return [row for row in csv.reader(io.StringIO(text)) if row]
    if kind == JSON:
        payload = json.loads(text)
        records = payload.get("instances", payload) if isinstance(payload, dict) else payload
        return pd.DataFrame.from_records(records)
    raise ValueError(f"unsupported content type {content_type!r}: send {CSV} or {JSON}")


def _frame(data: pd.DataFrame | list[Any], model: Model) -> pd.DataFrame:
    if isinstance(data, list):
        widths = {len(row) for row in data}
        if widths != {len(model.features)}:
            raise ValueError(f"each CSV row needs {len(model.features)} values ({', '.join(model.features)})")
        data = pd.DataFrame(data, columns=model.features)
    missing = [f for f in model.features if f not in data.columns]
    if missing:
        raise ValueError(f"missing features: {missing}")
    out = {}
    for name, kind in model.schema["features"].items():
        col = data[name].replace("", None)
        out[name] = (
            pd.to_numeric(col, errors="coerce").astype("float64") if kind == "numeric" else col.astype(object)
        )
    return pd.DataFrame(out)


def predict_fn(data: pd.DataFrame | list[Any], model: Model) -> dict[str, Any]:
    frame = _frame(data, model)
    result: dict[str, Any] = {"predictions": model.pipeline.predict(frame).tolist()}
    if model.schema.get("task") == "classification":
        result["probabilities"] = model.pipeline.predict_proba(frame).round(6).tolist()
    return result


def output_fn(prediction: dict[str, Any], accept: str) -> tuple[str, str]:
    return json.dumps(prediction), JSON
