"""The SageMaker inference container's handler chain: the user module's functions over the defaults.

Loading follows the SageMaker scikit-learn serving container:

* ``--model-dir`` is an extracted ``model.tar.gz``;
* the user module is ``SAGEMAKER_PROGRAM`` found in ``SAGEMAKER_SUBMIT_DIRECTORY`` (``/opt/ml/model/code``
  in AWS; the ``/opt/ml/model`` prefix is mapped to ``--model-dir`` here) and may define
  ``model_fn(model_dir)``, ``input_fn(body, content_type)``, ``predict_fn(data, model)``,
  ``output_fn(prediction, accept)``, or ``transform_fn(model, body, content_type, accept)`` instead of the
  last three; and, read by this server only, ``transform_many(model, requests)`` to predict requests
  that arrive together in one call (mlcycle's pipelines/inference.py defines it);
* defaults: joblib load of ``model.joblib``; CSV / JSON / NPY decoding (CSV with ``np.loadtxt``, 8x faster
  than the container's ``np.genfromtxt``, DESIGN.md section 6); ``model.predict``; JSON / CSV / NPY encoding.

As in the container, ``input_fn`` receives ``str`` for UTF-8 media types (CSV, JSON, plain text) and
``bytes`` otherwise, and the raw ``Content-Type`` header (parameters included).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger("mlcycle.serving")

#: Where SageMaker mounts the model inside the container; mapped to ``--model-dir``.
CONTAINER_MODEL_DIR = "/opt/ml/model"
JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
_TEXT_TYPES = frozenset({JSON, CSV, "text/plain"})


class ModelServerError(Exception):
    """A request the server refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def media_type(header: str) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv``."""
    return header.split(";", 1)[0].strip().lower()


# ---- default handlers (what the container does when the user module leaves a function out) ----------


def default_model_fn(model_dir: str) -> Any:
    """Load ``model.joblib`` (or the only ``*.joblib`` / ``*.pkl`` file) with joblib."""
    import joblib

    root = Path(model_dir)
    candidates = [root / "model.joblib", *sorted(root.glob("*.joblib")), *sorted(root.glob("*.pkl"))]
    for path in candidates:
        if path.is_file():
            return joblib.load(path)
    raise FileNotFoundError(f"no model.joblib (or *.joblib / *.pkl) in {model_dir} and no model_fn defined")


def default_input_fn(body: bytes | str, content_type: str) -> Any:
    """Decode CSV rows (no header), JSON (a list, or ``{"instances": [...]}``) or NPY into an array."""
    kind = media_type(content_type)
    try:
        if kind == CSV:
            text = body if isinstance(body, str) else body.decode("utf-8")
            return np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=float)
        if kind == JSON:
            data = json.loads(body)
            if isinstance(data, dict) and "instances" in data:
                data = data["instances"]
            return np.asarray(data)
        if kind == NPY:
            raw = body.encode("latin-1") if isinstance(body, str) else body
            return np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as error:  # JSONDecodeError and loadtxt's conversion errors are ValueErrors
        raise ModelServerError(f"cannot decode {kind} request: {error}", status=400) from error
    raise ModelServerError(f"unsupported content type {content_type!r}", status=415)


def default_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def best_accept(accept: str, offered: tuple[str, ...]) -> str:
    """The client's most preferred type among ``offered`` (q-values honoured, ``*/*`` takes the first)."""
    ranked = []
    for order, part in enumerate(p for p in accept.split(",") if p.strip()):
        media, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                with contextlib.suppress(ValueError):
                    quality = float(value)
        ranked.append((-quality, order, media.strip().lower()))
    for negative_quality, _, media in sorted(ranked):
        if negative_quality < 0 and (media in offered or media == "*/*"):
            return offered[0] if media == "*/*" else media
    raise ModelServerError(f"unsupported accept type {accept!r}: ask for {', '.join(offered)}", status=406)


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """Encode a prediction as JSON, CSV (one row per line) or NPY."""
    kind = best_accept(accept, (JSON, CSV, NPY))
    if kind == JSON:
        return json.dumps(prediction, default=_json_default).encode(), JSON
    if kind == CSV:
        buffer = io.StringIO()
        np.savetxt(buffer, np.atleast_1d(np.asarray(prediction)), delimiter=",", fmt="%s")
        return buffer.getvalue().encode(), CSV
    if kind == NPY:
        raw = io.BytesIO()
        np.save(raw, np.asarray(prediction), allow_pickle=False)
        return raw.getvalue(), NPY
    raise ModelServerError(f"unsupported accept type {accept!r}", status=406)


# ---- the handler: user module functions over the defaults --------------------------------------------


@dataclass
class InferenceHandler:
    """The loaded model and the four functions the container chains for each request."""

    model: Any
    input_fn: Callable[[bytes | str, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    transform_fn: Callable[[Any, bytes | str, str, str], Any] | None = None
    #: Not a container hook: predicts requests that arrive together in one call (see the module's doc).
    transform_many: Callable[[Any, list[tuple[bytes | str, str, str]]], list[Any]] | None = None
    default_accept: str = JSON

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Run one request through the chain; returns the response body and its content type."""
        accept = self._accept(accept)
        payload = _payload(body, content_type)
        if self.transform_fn is not None:
            result = self.transform_fn(self.model, payload, content_type, accept)
        else:
            data = self.input_fn(payload, content_type)
            prediction = self.predict_fn(data, self.model)
            result = self.output_fn(prediction, accept)
        return _as_response(result, accept)

    def invoke_many(self, requests: list[tuple[bytes, str, str]]) -> list[tuple[bytes, str] | Exception]:
        """Several requests at once: their answers, or the exception each one's own answer would be.

        With ``transform_many`` the requests share one prediction; if the model fails on the batch, each
        request is retried alone, so only the one the model fails on gets the failure.
        """
        if self.transform_many is None or len(requests) == 1:
            return [self._attempt(*request) for request in requests]
        prepared: list[tuple[bytes | str, str, str]] = []
        for body, content_type, accept in requests:
            try:
                prepared.append((_payload(body, content_type), content_type, self._accept(accept)))
            except ModelServerError:
                return [self._attempt(*request) for request in requests]
        try:
            results = self.transform_many(self.model, prepared)
        except Exception:
            log.warning(
                "a batch of %d requests failed; retrying them one by one", len(requests), exc_info=True
            )
            return [self._attempt(*request) for request in requests]
        return [
            result if isinstance(result, Exception) else _as_response(result, accept)
            for result, (_, _, accept) in zip(results, prepared, strict=True)
        ]

    def _attempt(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str] | Exception:
        try:
            return self.invoke(body, content_type, accept)
        except Exception as error:  # handed back to the caller, who answers it with its status
            return error

    def _accept(self, accept: str) -> str:
        """As the container passes it: none or ``*/*`` means SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, anything
        else goes to the handlers as sent (q-values and all)."""
        return self.default_accept if accept.strip() in ("", "*/*") else accept


def _payload(body: bytes, content_type: str) -> bytes | str:
    """``str`` for the UTF-8 media types, as the container hands them to the user module."""
    if media_type(content_type) not in _TEXT_TYPES:
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ModelServerError(f"the body is not UTF-8 text (byte {error.start})", status=400) from None


def _as_response(result: Any, accept: str) -> tuple[bytes, str]:
    """Accept what user ``output_fn``s return: bytes/str, ``(body, content_type)``, or JSON-able data."""
    content_type = media_type(accept.split(",", 1)[0])
    if isinstance(result, tuple) and len(result) == 2:
        result, content_type = result
    if isinstance(result, str):
        return result.encode(), content_type
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result), content_type
    return json.dumps(result, default=_json_default).encode(), JSON


def code_dir(model_dir: Path) -> Path:
    """SAGEMAKER_SUBMIT_DIRECTORY with the container's ``/opt/ml/model`` mapped to ``model_dir``."""
    submit = os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", f"{CONTAINER_MODEL_DIR}/code")
    if submit == CONTAINER_MODEL_DIR or submit.startswith(CONTAINER_MODEL_DIR + "/"):
        return model_dir / submit[len(CONTAINER_MODEL_DIR) :].lstrip("/")
    return Path(submit)


def _import_user_module(model_dir: Path) -> ModuleType | None:
    program = os.environ.get("SAGEMAKER_PROGRAM", "")
    if not program:
        return None
    directory = code_dir(model_dir)
    path = directory / (program if program.endswith(".py") else f"{program}.py")
    if not path.is_file():
        raise FileNotFoundError(f"SAGEMAKER_PROGRAM {program!r} not found in {directory}")
    # The code dir goes first on sys.path so the user module's sibling imports resolve, as in the container.
    sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def load_handler(model_dir: Path) -> InferenceHandler:
    """Import the user module (if any) and load the model, the way the container does at start-up."""
    module = _import_user_module(model_dir)

    def pick(name: str, default: Any) -> Any:
        return getattr(module, name, None) or default

    model_fn = pick("model_fn", default_model_fn)
    return InferenceHandler(
        model=model_fn(str(model_dir)),
        input_fn=pick("input_fn", default_input_fn),
        predict_fn=pick("predict_fn", default_predict_fn),
        output_fn=pick("output_fn", default_output_fn),
        transform_fn=pick("transform_fn", None),
        transform_many=pick("transform_many", None),
        default_accept=os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON),
    )
