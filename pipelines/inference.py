"""SageMaker inference handlers for mlcycle models (the scikit-learn serving container's contract).

The container's hooks: ``model_fn`` (load the model) and ``transform_fn`` (decode, predict, encode one
request); mlcycle's own model server also calls ``transform_many`` (the requests that arrive together, in
one prediction). The requests and answers (CSV, JSON, JSON lines, NPY; ``Accept`` with q-values) and the
client errors (415, 406, 400 naming the row and column) are pipelines/inference_codecs.py's; only a
failing model is a 500.

Speed: the classifier runs once per request (``predict_proba``; the label is its argmax, as ``predict``
computes it), and when the fitted pipeline has the shape mlcycle.modeling builds, it runs through
pipelines/inference_compiled.py (preprocessing replayed in NumPy, a HistGradientBoosting model's trees
scored all at once, bit-identical to scikit-learn).

The model's inference code in ``model.tar.gz`` is this file and its siblings ``inference_*.py``
(pipelines/train.py copies them to ``code/``, which the container puts on ``sys.path``): they import
nothing of mlcycle, and only NumPy, scikit-learn, joblib and threadpoolctl, which the SageMaker
scikit-learn container has.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

if TYPE_CHECKING or __package__:  # imported as pipelines.inference (and read so by mypy)
    from .inference_codecs import ClientError, Prediction, choose_accept, encode, read, to_columns
    from .inference_compiled import Booster, compile_matrix
else:  # in the serving container: a top-level module, its siblings beside it in the code dir
    from inference_codecs import ClientError, Prediction, choose_accept, encode, read, to_columns
    from inference_compiled import Booster, compile_matrix

#: Fault injection, for testing deployment guardrails: the share of predictions that fail as a broken model
#: would (set on the model's container by a training run started with ``fault_injection``; see
#: mlcycle.pipeline_runs.FaultInjection). Unset in normal use.
FAULT_ENV = "MLCYCLE_FAULT_MODEL_ERROR_RATE"


class InjectedFault(RuntimeError):
    """A prediction failed on purpose (:data:`FAULT_ENV`): the model fails as a broken one would."""


class Model:
    """The fitted pipeline, its schema (feature -> numeric | categorical), and a NumPy fast path."""

    def __init__(self, pipeline: Any, schema: dict[str, Any], *, fault_rate: float = 0.0) -> None:
        self.fault_rate = fault_rate
        self.pipeline = pipeline
        self.schema = schema
        self.kinds: dict[str, str] = dict(schema["features"])
        self.features = list(self.kinds)
        self.classifier = schema.get("task") == "classification"
        self._matrix = compile_matrix(pipeline, self.kinds)
        self._booster = Booster.compile(pipeline[-1]) if self._matrix is not None else None

    def predict(self, columns: dict[str, np.ndarray]) -> Prediction:
        if self.fault_rate and random.random() < self.fault_rate:
            raise InjectedFault(f"injected fault ({FAULT_ENV}={self.fault_rate})")
        estimator, data = self._inputs(columns)
        if self._booster is not None:
            return self._booster.predict(data, classifier=self.classifier)
        if not self.classifier:
            return Prediction(np.asarray(estimator.predict(data)).tolist(), None)
        proba = np.asarray(estimator.predict_proba(data))
        return Prediction(estimator.classes_[proba.argmax(axis=1)].tolist(), proba)

    def _inputs(self, columns: dict[str, np.ndarray]) -> tuple[Any, Any]:
        if self._matrix is not None:
            return self.pipeline[-1], self._matrix(columns)
        import pandas as pd

        return self.pipeline, pd.DataFrame(columns, columns=self.features)


def model_fn(model_dir: str) -> Model:
    root = Path(model_dir)
    schema = json.loads((root / "schema.json").read_text())
    fault_rate = float(os.environ.get(FAULT_ENV) or 0.0)
    model = Model(joblib.load(root / "model.joblib"), schema, fault_rate=fault_rate)
    # One thread per request: the servers run a worker per core, and the booster's OpenMP threads would
    # otherwise fight each other and the other workers for the same cores (20x slower under load, measured).
    # After loading: threadpoolctl limits only the libraries already loaded, and unpickling loads OpenMP.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    return model


def predict(rows: list[Any], model: Model) -> Prediction:
    return model.predict(to_columns(rows, model.kinds))


def transform_fn(model: Model, body: bytes | str, content_type: str, accept: str) -> Any:
    """The container's hook for the whole chain (decode, predict, encode), so a client's mistake gets its
    4xx in the real container too: its default chain of ``input_fn``/``predict_fn``/``output_fn`` answers
    an exception with a 500 that hides the reason (and it refuses a module defining both kinds of hook)."""
    try:
        choose_accept(accept)  # before any work: an answer the client cannot read is not worth computing
        return encode(model.predict(read(body, content_type, model.kinds)), accept)
    except ClientError as error:
        response = _container_response(error)
        if response is None:
            raise  # mlcycle's model server maps ClientError.status itself
        return response


def transform_many(model: Model, requests: Sequence[tuple[bytes | str, str, str]]) -> list[Any]:
    """Several requests, ``(body, content type, accept)`` each, in one prediction.

    Not a container hook: mlcycle's model server calls it with the requests that arrive together (the
    container calls ``transform_fn`` one request at a time). Each result is what ``transform_fn`` would
    return for that request, or the :class:`ClientError` it would raise: one client's mistake never
    touches another's answer. A failure of the model itself propagates (the server then retries the
    requests one by one, so that only the one that makes the model fail gets a 500).
    """
    results: list[Any] = [None] * len(requests)
    parts: list[tuple[int, int, str]] = []  # request, rows, accept
    columns: list[dict[str, np.ndarray]] = []
    for index, (body, content_type, accept) in enumerate(requests):
        try:
            choose_accept(accept)
            decoded = read(body, content_type, model.kinds)
        except ClientError as error:
            results[index] = error
            continue
        columns.append(decoded)
        parts.append((index, len(decoded[model.features[0]]), accept))
    if not parts:
        return results
    joined = {name: np.concatenate([c[name] for c in columns]) for name in model.features}
    prediction, start = model.predict(joined), 0
    for index, rows, accept in parts:
        try:
            results[index] = encode(prediction.part(start, start + rows), accept)
        except ClientError as error:
            results[index] = error
        start += rows
    return results


def _container_response(error: ClientError) -> Any:
    """The SageMaker scikit-learn container's own response type, when running inside it."""
    try:
        from sagemaker_containers.beta.framework import worker  # type: ignore[import-not-found]
    except ImportError:
        return None
    return worker.Response(response=str(error), status=error.status, mimetype="text/plain")
