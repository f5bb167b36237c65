"""SageMaker inference handlers for mlcycle models (the scikit-learn serving container's contract).

Requests (``Content-Type``), the shapes the SageMaker Python SDK's serializers send:

* ``text/csv``: rows of feature values in the model's feature order, no header;
* ``application/json``: records (``[{feature: value}, ...]``), ``{"instances": [...]}`` of records or of
  rows, nested lists (``[[v, ...], ...]``), a single record (``{feature: value}``) or a single row;
* ``application/jsonlines``: one record or row per line;
* ``application/x-npy``: a numeric or string array, 1-D (one row) or 2-D. Never unpickled: an object array
  is refused, since unpickling a stranger's bytes runs their code.

Answers, chosen by ``Accept`` (q-values honoured; none or ``*/*`` means JSON):
``application/json`` ``{"predictions": [...], "probabilities": [[...], ...]}`` (probabilities for
classifiers), ``text/csv`` (one line per row: prediction, then the class probabilities),
``application/jsonlines`` (one ``{"prediction", "probabilities"}`` per line) or ``application/x-npy``
(the same columns as the CSV, when the labels are numbers).

A client's mistake is a :class:`ClientError` with its HTTP status: 415 (content type), 406 (Accept), 400
naming the row and column (malformed body, wrong width, a header line, a value that is not a number where
the model needs one, an empty body). Only a failing model is a 500.

Speed: the classifier runs once per request (``predict_proba``; the label is its argmax, as ``predict``
computes it), and when the fitted pipeline has the shape mlcycle.modeling builds, its preprocessing is
replayed in NumPy (same operations, same floats) instead of through pandas, and a HistGradientBoosting
model's trees are scored all at once (:class:`_Booster`, bit-identical to scikit-learn). A plain CSV body
is parsed a column at a time; anything unusual in it, and every mistake, goes through the csv module, so
errors still name the row and column. This file is the model's whole inference code in ``model.tar.gz``:
it imports nothing of mlcycle, and only NumPy, scikit-learn, joblib and threadpoolctl, which the SageMaker
scikit-learn container has.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
ACCEPTED = (JSON, CSV, JSONLINES, NPY)
_MISSING_TEXT = frozenset({"", "nan", "NaN", "NA", "null", "None"})
#: Fault injection, for testing deployment guardrails: the share of predictions that fail as a broken model
#: would (set on the model's container by a training run started with ``fault_injection``; see
#: mlcycle.pipeline_runs.FaultInjection). Unset in normal use.
FAULT_ENV = "MLCYCLE_FAULT_MODEL_ERROR_RATE"


class ClientError(ValueError):
    """The request is wrong; ``status`` is the 4xx to answer with, the message says what to fix."""

    status = 400


class UnsupportedMediaType(ClientError):
    status = 415


class NotAcceptable(ClientError):
    status = 406


@dataclass
class Prediction:
    labels: list[Any]
    probabilities: np.ndarray | None  # (rows, classes) for classifiers

    def part(self, start: int, stop: int) -> Prediction:
        proba = None if self.probabilities is None else self.probabilities[start:stop]
        return Prediction(self.labels[start:stop], proba)


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
        self._matrix = _compile(pipeline, self.kinds)
        self._booster = _Booster.compile(pipeline[-1]) if self._matrix is not None else None

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


def decode(body: bytes | str, content_type: str) -> list[Any]:
    """Decode the body into rows (lists in feature order) or records (dicts)."""
    kind = _media_type(content_type)
    if kind == NPY:
        return _npy_rows(body.encode("latin-1") if isinstance(body, str) else body)
    if kind not in (CSV, JSON, JSONLINES):
        raise UnsupportedMediaType(
            f"unsupported content type {content_type!r}: send {CSV}, {JSON}, {JSONLINES} or {NPY}"
        )
    text = _text(body)
    if not text.strip():
        raise ClientError("empty body: send at least one row")
    if kind == CSV:
        return [row for row in csv.reader(io.StringIO(text)) if row]
    if kind == JSON:
        return _json_rows(_json(text, "body"))
    return [_one_row(_json(line, f"line {n}")) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def predict(rows: list[Any], model: Model) -> Prediction:
    return model.predict(_columns(rows, model))


def encode(prediction: Prediction, accept: str) -> tuple[bytes, str]:
    kind = choose_accept(accept)
    proba = prediction.probabilities
    if kind == JSON:
        body: dict[str, Any] = {"predictions": prediction.labels}
        if proba is not None:
            body["probabilities"] = proba.round(6).tolist()
        return json.dumps(body).encode(), JSON
    table = _table(prediction)
    if kind == CSV:
        return "".join(",".join(map(str, row)) + "\n" for row in table).encode(), CSV
    if kind == JSONLINES:
        lines = [
            {"prediction": label}
            | ({"probabilities": proba[i].round(6).tolist()} if proba is not None else {})
            for i, label in enumerate(prediction.labels)
        ]
        return "".join(json.dumps(line) + "\n" for line in lines).encode(), JSONLINES
    return _npy(prediction), NPY


def transform_fn(model: Model, body: bytes | str, content_type: str, accept: str) -> Any:
    """The container's hook for the whole chain (decode, predict, encode), so a client's mistake gets its
    4xx in the real container too: its default chain of ``input_fn``/``predict_fn``/``output_fn`` answers
    an exception with a 500 that hides the reason (and it refuses a module defining both kinds of hook)."""
    try:
        choose_accept(accept)  # before any work: an answer the client cannot read is not worth computing
        return encode(model.predict(_read(body, content_type, model)), accept)
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
            decoded = _read(body, content_type, model)
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


@functools.lru_cache(maxsize=256)
def choose_accept(accept: str) -> str:
    """The best type we can answer in, by the client's q-values; JSON for none or ``*/*`` (remembered:
    clients send the same few headers)."""
    offers: list[tuple[float, int, str]] = []
    for order, part in enumerate(p for p in (accept or "").split(",") if p.strip()):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    raise NotAcceptable(f"Accept {accept!r}: {param!r} is not a q-value") from None
        offers.append((-quality, order, media.lower()))
    if not offers:
        return JSON
    for negative_quality, _, media in sorted(offers):
        if negative_quality >= 0:
            continue  # q=0 means "not this"
        if media in ("*/*", "application/*"):
            return JSON
        if media == "text/*":
            return CSV
        if media in ACCEPTED:
            return media
    raise NotAcceptable(f"cannot answer in {accept!r}: ask for {', '.join(ACCEPTED)}")


# ---- decoding ------------------------------------------------------------------------------------------


def _media_type(header: str) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _text(body: bytes | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ClientError(f"the body is not UTF-8 text (byte {error.start})") from None


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        at = f"line {error.lineno} column {error.colno}"
        raise ClientError(f"{where} is not valid JSON: {error.msg} at {at}") from None


def _json_rows(data: Any) -> list[Any]:
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    if isinstance(data, dict):
        return [data]  # a single record
    if isinstance(data, list) and data and all(_is_scalar(v) for v in data):
        return [data]  # a single row
    if not isinstance(data, list) or not data:
        raise ClientError('JSON must be records, rows, {"instances": [...]}, one record or one row')
    return [_one_row(item) for item in data]


def _one_row(item: Any) -> Any:
    if isinstance(item, dict) or (isinstance(item, list) and all(_is_scalar(v) for v in item)):
        return item
    raise ClientError(f"each row must be a JSON object or a flat list of values, not {json.dumps(item)[:80]}")


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _npy_rows(raw: bytes) -> list[Any]:
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise ClientError(
                "object arrays are refused (loading them would unpickle, running the sender's code): "
                "send a numeric or string array"
            ) from None
        raise ClientError(f"not a .npy array: {error}") from None
    except (OSError, EOFError) as error:
        raise ClientError(f"not a .npy array: {error}") from None
    if array.ndim not in (1, 2) or array.size == 0:
        raise ClientError(f"send a 1-D (one row) or 2-D array, not shape {array.shape}")
    rows: list[Any] = np.atleast_2d(array).tolist()
    return rows


def _read(body: bytes | str, content_type: str, model: Model) -> dict[str, np.ndarray]:
    """The body's columns: ``_columns(decode(body, content_type), model)``, a CSV body column-wise when it
    can be (the same columns, or the same error, as the careful path, which a test checks)."""
    if _media_type(content_type) == CSV:
        text = _text(body)
        fast = _csv_columns(text, model) if text.strip() else None
        if fast is not None:
            return fast
    return _columns(decode(body, content_type), model)


def _csv_columns(text: str, model: Model) -> dict[str, np.ndarray] | None:
    """The columns of a plain CSV body, parsed a column at a time (split, ``float`` over a column, the
    missing-value check once per distinct category); None for anything else: a quote, CR or NUL (the csv
    module's business), a row of the wrong width, a header, a value that is not a number, a field over the
    csv module's size limit. The careful path then parses the body, and names the row and column."""
    if '"' in text or "\r" in text or "\x00" in text:
        return None
    lines = [line for line in text.split("\n") if line]  # csv.reader drops empty lines too
    names, kinds = model.features, model.kinds
    width = len(names)
    if not lines or {line.count(",") for line in lines} != {width - 1}:
        return None
    cells = ",".join(lines).split(",")
    if len(text) > csv.field_size_limit() and max(map(len, cells)) > csv.field_size_limit():
        return None
    if [cell.strip().lower() for cell in cells[:width]] == [name.lower() for name in names]:
        return None  # a header
    columns: dict[str, np.ndarray] = {}
    for index, name in enumerate(names):
        column = cells[index::width]
        if kinds[name] == "numeric":
            # float() strips blanks and reads "nan" as _numeric does; the other missing marks it refuses.
            try:
                values = list(map(float, column))
            except ValueError:
                missing = {value for value in set(column) if value.strip() in _MISSING_TEXT}
                try:
                    values = [math.nan if value in missing else float(value) for value in column]
                except ValueError:
                    return None
            columns[name] = np.array(values, dtype=float)
        else:
            missing = {value for value in set(column) if value.strip() in _MISSING_TEXT}
            if missing:
                column = [None if value in missing else value for value in column]  # type: ignore[misc]
            columns[name] = np.array(column, dtype=object)
    return columns


def _columns(rows: list[Any], model: Model) -> dict[str, np.ndarray]:
    """Rows or records -> one array per feature (float for numeric, object for categorical)."""
    names, kinds = model.features, model.kinds
    values: list[list[Any]] = [[] for _ in names]
    for number, row in enumerate(rows, 1):
        cells = _cells(row, number, names)
        for index, (name, cell) in enumerate(zip(names, cells, strict=True)):
            values[index].append(
                _numeric(cell, number, name) if kinds[name] == "numeric" else _category(cell)
            )
    return {
        name: np.asarray(column, dtype=float if kinds[name] == "numeric" else object)
        for name, column in zip(names, values, strict=True)
    }


def _cells(row: Any, number: int, names: Sequence[str]) -> Sequence[Any]:
    if isinstance(row, dict):
        absent = [name for name in names if name not in row]
        if absent:
            raise ClientError(f"row {number} lacks {absent} (send null for a missing value)")
        return [row[name] for name in names]
    if len(row) != len(names):
        raise ClientError(
            f"row {number} has {len(row)} values; the model takes {len(names)}: {', '.join(names)}"
        )
    if number == 1 and [str(v).strip().lower() for v in row] == [n.lower() for n in names]:
        raise ClientError("row 1 is a header (the feature names): send rows without a header")
    cells: Sequence[Any] = row
    return cells


def _numeric(cell: Any, number: int, name: str) -> float:
    if cell is None or isinstance(cell, bool):
        return math.nan if cell is None else float(cell)
    if isinstance(cell, int | float):
        return float(cell)
    text = str(cell).strip()
    if text in _MISSING_TEXT:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ClientError(f"row {number}, column {name!r}: {text[:40]!r} is not a number") from None


def _category(cell: Any) -> Any:
    if cell is None:
        return None
    text = str(cell)
    return None if text.strip() in _MISSING_TEXT else text


# ---- encoding ------------------------------------------------------------------------------------------


def _table(prediction: Prediction) -> list[list[Any]]:
    proba = prediction.probabilities
    if proba is None:
        return [[label] for label in prediction.labels]
    return [[label, *(round(float(p), 6) for p in proba[i])] for i, label in enumerate(prediction.labels)]


def _npy(prediction: Prediction) -> bytes:
    try:
        array = np.asarray(_table(prediction), dtype=float)
    except ValueError:
        raise NotAcceptable(f"the labels are not numbers: ask for {JSON}, {CSV} or {JSONLINES}") from None
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _container_response(error: ClientError) -> Any:
    """The SageMaker scikit-learn container's own response type, when running inside it."""
    try:
        from sagemaker_containers.beta.framework import worker  # type: ignore[import-not-found]
    except ImportError:
        return None
    return worker.Response(response=str(error), status=error.status, mimetype="text/plain")


# ---- the NumPy replay of mlcycle.modeling's preprocessing ---------------------------------------------


def _compile(pipeline: Any, kinds: dict[str, str]) -> Callable[[dict[str, np.ndarray]], np.ndarray] | None:
    """A function building the estimator's input from the columns, doing what the fitted
    ``ColumnTransformer`` of mlcycle.modeling.build_pipeline does (median imputation and scaling of the
    numeric features, one-hot of the categorical ones, unknown categories all zeros); None for any other
    pipeline shape, which then runs as fitted."""
    try:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        pre = pipeline[0]
        if len(pipeline) != 2 or not isinstance(pre, ColumnTransformer) or pre.remainder != "drop":
            return None
        (_, num, num_cols), (_, cat, cat_cols) = [t for t in pre.transformers_ if t[0] != "remainder"]
        imputer, scaler = num.steps[0][1], num.steps[1][1]
        if not (
            isinstance(imputer, SimpleImputer)
            and isinstance(scaler, StandardScaler)
            and isinstance(cat, OneHotEncoder)
            and cat.handle_unknown == "ignore"
            and cat.drop is None
            and set(num_cols) | set(cat_cols) == set(kinds)
        ):
            return None
    except (TypeError, ValueError, AttributeError, IndexError):
        return None
    fill = np.asarray(imputer.statistics_, dtype=float)
    if np.isnan(fill).any():
        return None  # the imputer dropped an all-missing training column: let the pipeline do it
    mean = np.zeros_like(fill) if scaler.mean_ is None else np.asarray(scaler.mean_)
    scale = np.ones_like(fill) if scaler.scale_ is None else np.asarray(scaler.scale_)
    # Per categorical column, its categories' columns in the estimator's input.
    places: list[dict[Any, int]] = []
    total = len(num_cols)
    for cats in cat.categories_:
        places.append({value: total + i for i, value in enumerate(cats)})
        total += len(cats)

    def matrix(columns: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(columns[num_cols[0]]) if num_cols else len(columns[cat_cols[0]])
        numeric = np.empty((rows, len(num_cols)))
        for j, name in enumerate(num_cols):
            numeric[:, j] = columns[name]
        missing = np.isnan(numeric)
        if missing.any():
            np.copyto(numeric, fill, where=missing)
        numeric -= mean
        numeric /= scale
        out = np.zeros((rows, total))
        out[:, : len(num_cols)] = numeric
        flat = out.reshape(-1)
        if rows <= 16:  # a few cells: a dict hit each (an unknown or missing category sets no column)
            hits = [
                row * total + place[value]
                for name, place in zip(cat_cols, places, strict=True)
                for row, value in enumerate(columns[name].tolist())
                if value in place
            ]
            flat[hits] = 1.0
            return out
        starts = np.arange(0, rows * total, total)
        for name, place in zip(cat_cols, places, strict=True):
            column = columns[name]
            # The lookup once per distinct value (None or text), then per cell a dict hit.
            found = {value: place.get(value, -1) for value in set(column)}
            index = np.fromiter(map(found.__getitem__, column), dtype=np.intp, count=rows)
            known = index >= 0
            flat[starts[known] + index[known]] = 1.0
        return out

    return matrix


class _Booster:
    """A fitted HistGradientBoosting model's trees as flat tables, evaluated for all trees and rows at once.

    scikit-learn walks its trees one at a time (200 calls for the example model, ~1.2 ms for a single row).
    Here the trees are scored the QuickScorer way (Lucchese et al., SIGIR 2015), in a fixed number of
    NumPy steps whatever the rows: a tree's leaves are bits of a word, left to right; every split that
    sends a row right rules out the leaves of its left subtree, so the row's leaf is the lowest bit left
    after ANDing, per tree, the masks of the splits it fails. The comparisons are made once per distinct
    (feature, threshold, missing-goes-left) split, the exact ``x <= threshold`` scikit-learn makes (a
    missing value goes where the split sends missing values). The leaves are then summed tree by tree in
    scikit-learn's own order (the baseline, then each iteration's value, sequentially), so the raw scores,
    and hence labels and probabilities, are bit-for-bit scikit-learn's: :meth:`compile` checks that on
    probe rows at load, and a parity test checks it on real ones.
    """

    #: Rows scored per block: the per-split words stay in cache (measured best at 256-512 rows).
    BLOCK = 256

    def __init__(self, estimator: Any, trees: list[Any], leaves: int) -> None:
        self.estimator = estimator
        self.per_iteration = int(estimator.n_trees_per_iteration_)
        bits = next(b for b in (8, 16, 32, 64) if leaves <= b)
        self.word, self.signed = np.dtype(f"uint{bits}"), np.dtype(f"int{bits}")
        every = (1 << bits) - 1
        splits = [self._splits(tree.nodes, every) for tree in trees]
        self.trees, self.depth = len(trees), max(len(s[0]) for s in splits)
        # One row of the (depth, trees) tables per split rank; a tree with fewer splits is padded with
        # splits whose mask rules nothing out.
        keys: dict[tuple[int, float, bool], int] = {}
        node_key = np.zeros((self.depth, self.trees), dtype=np.intp)
        mask = np.full((self.depth, self.trees), every, dtype=self.word)
        values = np.zeros((self.trees, leaves))
        for t, (tree_splits, tree_values) in enumerate(splits):
            values[t, : len(tree_values)] = tree_values
            for rank, (feature, threshold, missing_left, split_mask) in enumerate(tree_splits):
                node_key[rank, t] = keys.setdefault((feature, threshold, missing_left), len(keys))
                mask[rank, t] = split_mask
        if not keys:  # every tree is a single leaf
            keys[(0, math.inf, False)] = 0
        distinct = list(keys)
        self.feature = np.asarray([k[0] for k in distinct], dtype=np.intp)
        self.threshold = np.asarray([k[1] for k in distinct], dtype=float)[:, None]
        self.missing_left = np.asarray([k[2] for k in distinct], dtype=bool)[:, None]
        self.node_key = node_key.ravel()
        self.mask = mask.reshape(-1, 1)
        self.values = values.ravel()
        self.value_offset = (np.arange(self.trees) * leaves)[:, None]
        self.lowest = None
        if bits <= 16:  # index of the lowest set bit, by table
            self.lowest = np.zeros(1 << bits, dtype=np.intp)
            for b in range(bits):
                self.lowest[1 << b] = b
        self.baseline = np.asarray(estimator._baseline_prediction, dtype=float).reshape(-1)
        self._local = threading.local()

    @staticmethod
    def _splits(nodes: np.ndarray, every: int) -> tuple[list[tuple[int, float, bool, int]], list[float]]:
        """A tree's splits (feature, threshold, missing goes left, mask of the leaves left once the split
        fails) and its leaf values, leaves numbered left to right."""
        splits: list[tuple[int, float, bool, int]] = []
        values: list[float] = []
        stack: list[tuple[int, int]] = [(0, -1)]  # (node, index of its split once entered, or -1)
        pending: dict[int, int] = {}  # split index -> first leaf of its left subtree
        while stack:
            node, split = stack.pop()
            if split >= 0:  # back from the left subtree: it holds leaves [first, len(values))
                first = pending.pop(split)
                width = len(values) - first
                feature, threshold, missing_left, _ = splits[split]
                splits[split] = (feature, threshold, missing_left, every & ~(((1 << width) - 1) << first))
                continue
            row = nodes[node]
            if row["is_leaf"]:
                values.append(float(row["value"]))
                continue
            index = len(splits)
            splits.append(
                (int(row["feature_idx"]), float(row["num_threshold"]), bool(row["missing_go_to_left"]), 0)
            )
            pending[index] = len(values)
            stack.append((int(row["right"]), -1))
            stack.append((node, index))  # closes the left subtree before the right one starts
            stack.append((int(row["left"]), -1))
        return splits, values

    @classmethod
    def compile(cls, estimator: Any) -> _Booster | None:
        """None unless ``estimator`` is a fitted scikit-learn HistGradientBoosting model without
        categorical splits (mlcycle one-hot encodes categories, so its models have none), of at most 64
        leaves a tree, whose raw scores this reproduces bit for bit on probe rows."""
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

            if not isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
                return None
            trees = [tree for iteration in estimator._predictors for tree in iteration]
            if not trees or any(tree.nodes["is_categorical"].any() for tree in trees):
                return None
            leaves = max(int(tree.nodes["is_leaf"].sum()) for tree in trees)
            if leaves > 64 or any(np.isnan(tree.nodes["num_threshold"]).any() for tree in trees):
                return None
            booster = cls(estimator, trees, leaves)
            probe = booster._probe()
            for rows in (probe[:1], probe):
                if not np.array_equal(booster.raw(rows), estimator._raw_predict(rows), equal_nan=True):
                    return None
            return booster
        except (AttributeError, TypeError, ValueError, IndexError, KeyError):
            return None

    def _probe(self) -> np.ndarray:
        """Rows on, just below and just above the model's thresholds, and missing values."""
        width = int(self.estimator.n_features_in_)
        rng = np.random.default_rng(0)
        rows = rng.normal(size=(48, width))
        cuts = self.threshold.ravel()
        for feature in range(width):
            own = cuts[(self.feature == feature) & np.isfinite(cuts)]
            if len(own):
                picked = rng.choice(own, size=len(rows))
                rows[:, feature] = picked + rng.choice([0.0, 1e-9, -1e-9], size=len(rows)) * (1 + abs(picked))
        rows[rng.random(rows.shape) < 0.1] = np.nan
        return rows

    def raw(self, data: np.ndarray) -> np.ndarray:
        """``estimator._raw_predict(data)``: shape (rows, trees per iteration)."""
        data = np.asarray(data, dtype=float)
        rows = len(data)
        if rows <= self.BLOCK:
            return self._block(data)
        return np.concatenate([self._block(data[s : s + self.BLOCK]) for s in range(0, rows, self.BLOCK)])

    def _block(self, data: np.ndarray) -> np.ndarray:
        rows, k = len(data), self.per_iteration
        splits, nodes, trees = len(self.feature), len(self.node_key), self.trees
        space = self._workspace()

        def buffer(name: str, dtype: Any, *shape: int) -> np.ndarray:
            """A C-contiguous ``shape`` array over this thread's buffer ``name`` (last axis <= BLOCK + 1)."""
            size = math.prod(shape[:-1]) * (self.BLOCK + 1)
            return space.setdefault(name, np.empty(size, dtype=dtype))[: math.prod(shape)].reshape(shape)

        # Every array lives in a buffer this thread reuses: fresh arrays of this size come from mmap, and
        # touching their pages again on every request cost more than the arithmetic (~2 us a page).
        x = np.take(data.T, self.feature, axis=0, out=buffer("x", float, splits, rows), mode="clip")
        left = np.less_equal(x, self.threshold, out=buffer("left", bool, splits, rows))
        if np.isnan(data).any():  # NaN compares False: it goes left only where the split sends missing left
            missing = np.isnan(x, out=buffer("missing", bool, splits, rows))
            left |= np.logical_and(missing, self.missing_left, out=missing)
        # All ones where the row goes left (the split rules nothing out), else the split's mask.
        ones = np.negative(
            left.view(np.uint8), dtype=self.signed, out=buffer("ones", self.signed, splits, rows)
        )
        words = buffer("words", self.word, nodes, rows)
        np.take(ones.view(self.word), self.node_key, axis=0, out=words, mode="clip")
        words |= self.mask
        alive = np.bitwise_and.reduce(
            words.reshape(self.depth, trees, rows), axis=0, out=buffer("alive", self.word, trees, rows)
        )
        lowest = np.invert(alive, out=buffer("lowest", self.word, trees, rows))
        lowest += self.word.type(1)
        alive &= lowest  # the lowest bit: the leftmost leaf still possible
        # The lowest bit's index: by table for words of 16 bits or fewer, else from its float exponent.
        leaf = buffer("leaf", np.intp, trees, rows)
        if self.lowest is not None:
            np.take(self.lowest, alive, out=leaf, mode="clip")
        else:
            exponent = np.frexp(
                alive.astype(float),
                buffer("mantissa", float, trees, rows),
                buffer("exp", np.intc, trees, rows),
            )[1]
            np.subtract(exponent, 1, out=leaf, casting="unsafe")
        leaf += self.value_offset
        # The sum over iterations, in order. A reduction over the outer axis adds row after row; with a
        # single column NumPy would sum pairwise instead, so a lone score gets a zero column beside it.
        columns = rows + (rows * k == 1)
        stack = buffer("stack", float, trees // k + 1, k, columns)
        stack[0] = self.baseline[:, None]
        stack[1:, :, rows:] = 0.0
        np.take(self.values, leaf.reshape(-1, k, rows), out=stack[1:, :, :rows], mode="clip")
        raw: np.ndarray = np.add.reduce(stack, axis=0)[:, :rows].T
        return raw

    def _workspace(self) -> dict[str, np.ndarray]:
        """This thread's buffers (a server predicts one request at a time per thread)."""
        try:
            space: dict[str, np.ndarray] = self._local.space
        except AttributeError:
            space = self._local.space = {}
        return space

    def predict(self, data: np.ndarray, *, classifier: bool) -> Prediction:
        raw = self.raw(data)
        loss = self.estimator._loss
        if not classifier:
            return Prediction(loss.link.inverse(raw.ravel()).tolist(), None)
        encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else raw.argmax(axis=1)
        return Prediction(self.estimator.classes_[encoded].tolist(), loss.predict_proba(raw))
