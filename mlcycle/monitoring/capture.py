"""Captured traffic as a table: SageMaker's data capture JSONL decoded into one row per predicted row.

Each capture record holds one invocation: its input (``endpointInput``) and answer (``endpointOutput``),
each with its observed content type and encoding, plus ``eventMetadata`` (event id, inference id, time;
mlcycle also records a failed invocation's status). Inputs are decoded as the model's inference handlers
decode them (CSV rows in feature order without a header; JSON records, ``{"instances": ...}``, nested
lists, one record or one row; JSON lines) and lined up with the model's schema; answers give the
``prediction`` and, for a binary classifier, the positive class's ``probability``.

A record that cannot be decoded, or whose answer has a different number of rows than its input, is
counted (``CaptureWindow.undecodable``) and left out, never guessed at. Failed invocations are counted
apart (``failed``): they have no answer to monitor.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

#: Columns a window has besides the model's features.
META_COLUMNS = ("prediction", "probability", "inference_id", "event_id", "inference_time")


@dataclass
class CaptureWindow:
    """Decoded rows (features, prediction, probability, ids, time), and what could not be used."""

    frame: pd.DataFrame
    records: int = 0
    failed: int = 0
    undecodable: int = 0
    problems: list[str] = field(default_factory=list)  # the first few reasons, for the report

    @property
    def rows(self) -> int:
        return len(self.frame)


def decode(lines: Iterable[bytes | str], features: Sequence[str]) -> CaptureWindow:
    """Decode capture JSONL lines into a window. Feature cells stay as sent (strings from CSV, JSON
    values): :func:`typed` converts them, and the drift comparison counts the ones that are not numbers."""
    rows: list[dict[str, Any] | list[Any]] = []
    meta: dict[str, list[Any]] = {name: [] for name in META_COLUMNS}
    window = CaptureWindow(frame=pd.DataFrame())
    for line in lines:
        if not line.strip():
            continue
        window.records += 1
        try:
            _decode_record(json.loads(line), rows, meta, window)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            window.undecodable += 1
            _note(window, f"record {window.records}: {type(error).__name__}: {error}")
    window.frame = _frame(rows, meta, features)
    return window


def _decode_record(
    record: dict[str, Any],
    rows: list[dict[str, Any] | list[Any]],
    meta: dict[str, list[Any]],
    window: CaptureWindow,
) -> None:
    metadata = record.get("eventMetadata", {})
    status = int(metadata.get("invocationStatus", 200))
    if not 200 <= status < 300:
        window.failed += 1
        return
    data = record["captureData"]
    inputs = _input_rows(data["endpointInput"])
    predictions, probabilities = _answers(data["endpointOutput"])
    if len(inputs) != len(predictions):
        raise ValueError(f"{len(inputs)} input rows but {len(predictions)} answers")
    rows.extend(inputs)
    count = len(inputs)
    meta["prediction"].extend(predictions)
    meta["probability"].extend(probabilities)
    meta["inference_id"].extend([metadata.get("inferenceId")] * count)
    meta["event_id"].extend([metadata.get("eventId")] * count)
    meta["inference_time"].extend([metadata.get("inferenceTime")] * count)


def _text(entry: dict[str, Any]) -> tuple[str, str]:
    kind = str(entry.get("observedContentType", "")).split(";", 1)[0].strip().lower()
    data = str(entry.get("data", ""))
    if entry.get("encoding") == "BASE64":
        if kind == "application/x-npy":
            raise ValueError("NPY capture is not decoded (send CSV or JSON to have it monitored)")
        data = base64.b64decode(data).decode("utf-8")
    return kind, data


def _input_rows(entry: dict[str, Any]) -> list[dict[str, Any] | list[Any]]:
    kind, data = _text(entry)
    if kind == "text/csv":
        return [row for row in csv.reader(io.StringIO(data)) if row]
    if kind == "application/json":
        return _json_rows(json.loads(data))
    if kind == "application/jsonlines":
        return [_one_row(json.loads(line)) for line in data.splitlines() if line.strip()]
    raise ValueError(f"cannot decode input of content type {kind!r}")


def _json_rows(body: Any) -> list[dict[str, Any] | list[Any]]:
    if isinstance(body, dict) and "instances" in body:
        body = body["instances"]
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list) and body and not isinstance(body[0], dict | list):
        return [body]  # one row of values
    if isinstance(body, list):
        return [_one_row(item) for item in body]
    raise ValueError("JSON input is neither records nor rows")


def _one_row(item: Any) -> dict[str, Any] | list[Any]:
    if isinstance(item, dict | list):
        return item
    raise ValueError(f"a row must be an object or a list, not {type(item).__name__}")


def _answers(entry: dict[str, Any]) -> tuple[list[Any], list[float]]:
    """Predicted labels, and the positive class's probability per row (NaN unless binary)."""
    kind, data = _text(entry)
    labels: list[Any]
    probabilities: list[Any]
    if kind == "application/json":
        body = json.loads(data)
        labels = list(body["predictions"])
        probabilities = list(body.get("probabilities") or [None] * len(labels))
    elif kind == "application/jsonlines":
        items = [json.loads(line) for line in data.splitlines() if line.strip()]
        labels = [item["prediction"] for item in items]
        probabilities = [item.get("probabilities") for item in items]
    elif kind == "text/csv":
        table = [row for row in csv.reader(io.StringIO(data)) if row]
        labels = [_number_or_text(row[0]) for row in table]
        probabilities = [[float(v) for v in row[1:]] or None for row in table]
    else:
        raise ValueError(f"cannot decode an answer of content type {kind!r}")
    return labels, [_positive(p) for p in probabilities]


def _positive(probabilities: Any) -> float:
    if isinstance(probabilities, list) and len(probabilities) == 2:
        return float(probabilities[1])
    if isinstance(probabilities, int | float):
        return float(probabilities)
    return float("nan")


def _number_or_text(value: str) -> Any:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


def _frame(
    rows: list[dict[str, Any] | list[Any]], meta: dict[str, list[Any]], features: Sequence[str]
) -> pd.DataFrame:
    columns: dict[str, Any] = {name: [] for name in features}
    for row in rows:
        if isinstance(row, dict):
            for name in features:
                columns[name].append(row.get(name))
        else:
            padded = [*row[: len(features)], *[None] * (len(features) - len(row))]
            for name, value in zip(features, padded, strict=True):
                columns[name].append(value)
    frame = pd.DataFrame(columns, columns=list(features))
    for name in features:
        frame[name] = (
            frame[name].astype(object).where(frame[name] != "", None)
        )  # an empty CSV cell is missing
    for name in META_COLUMNS:
        frame[name] = meta[name]
    frame["probability"] = frame["probability"].astype("float64")
    frame["inference_time"] = pd.to_datetime(frame["inference_time"], utc=True, errors="coerce")
    return frame


def typed(frame: pd.DataFrame, numeric: Iterable[str]) -> pd.DataFrame:
    """A copy with the ``numeric`` features as floats (a cell that is not a number becomes NaN; the drift
    comparison, given the raw cells, counts those as invalid)."""
    out = frame.copy()
    for name in numeric:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    return out


def _note(window: CaptureWindow, problem: str) -> None:
    if len(window.problems) < 5:
        window.problems.append(problem)
