"""The inference handlers' requests and answers: decoding, content negotiation, encoding, client errors.

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
the model needs one, an empty body).

A body becomes one array per feature (:func:`read`), given the model's features in order and their kinds
(``numeric`` or ``categorical``). A plain CSV body is parsed a column at a time; anything unusual in it,
and every mistake, goes through the csv module, so errors still name the row and column.

Part of the model's inference code in ``model.tar.gz`` (pipelines/inference.py): imports nothing of
mlcycle, and only NumPy.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
ACCEPTED = (JSON, CSV, JSONLINES, NPY)
_MISSING_TEXT = frozenset({"", "nan", "NaN", "NA", "null", "None"})


class ClientError(ValueError):
    """The request is wrong; ``status`` is the 4xx to answer with, the message says what to fix."""

    status = 400


class UnsupportedMediaType(ClientError):
    status = 415


class NotAcceptable(ClientError):
    status = 406


@dataclass
class Prediction:
    """What the model answers for a request's rows, which :func:`encode` writes in the asked type."""

    labels: list[Any]
    probabilities: np.ndarray | None  # (rows, classes) for classifiers

    def part(self, start: int, stop: int) -> Prediction:
        proba = None if self.probabilities is None else self.probabilities[start:stop]
        return Prediction(self.labels[start:stop], proba)


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


def read(body: bytes | str, content_type: str, kinds: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The body's columns: ``to_columns(decode(body, content_type), kinds)``, a CSV body column-wise when
    it can be (the same columns, or the same error, as the careful path, which a test checks). ``kinds``:
    the model's features in order, each ``numeric`` or ``categorical``."""
    if _media_type(content_type) == CSV:
        text = _text(body)
        fast = _csv_columns(text, kinds) if text.strip() else None
        if fast is not None:
            return fast
    return to_columns(decode(body, content_type), kinds)


def _csv_columns(text: str, kinds: Mapping[str, str]) -> dict[str, np.ndarray] | None:
    """The columns of a plain CSV body, parsed a column at a time (split, ``float`` over a column, the
    missing-value check once per distinct category); None for anything else: a quote, CR or NUL (the csv
    module's business), a row of the wrong width, a header, a value that is not a number, a field over the
    csv module's size limit. The careful path then parses the body, and names the row and column."""
    if '"' in text or "\r" in text or "\x00" in text:
        return None
    lines = [line for line in text.split("\n") if line]  # csv.reader drops empty lines too
    names = list(kinds)
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


def to_columns(rows: list[Any], kinds: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Rows or records -> one array per feature of ``kinds`` (float for numeric, object for categorical)."""
    names = list(kinds)
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
