"""Ground truth: labels keyed by inference id, parsed from a user's file and kept in the monitoring bucket.

A label file is CSV, JSON lines or Parquet (by suffix, optionally ``.gz``) with an ``inference_id``
column, the label (named ``label`` or after the problem's target) and optionally ``labelled_at``. JSON
lines may also hold Model Monitor's ground-truth records (``groundTruthData.data`` with
``eventMetadata.inferenceId`` or ``eventId``), so files written for it keep working.

Stored labels are Parquet objects under ``labels/{source}/{digest}.parquet``; the digest is of the content,
so uploading the same file twice stores it once. :func:`load` merges every object the way Model Monitor
merges ``groundTruthData`` with the capture's ``eventMetadata``: one label per inference id, and when an id
was labelled more than once the latest label (by ``labelled_at``, then by when it was stored) wins. Parquet
files other tools drop under ``labels/`` with the same columns are read as well.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlcycle.config import ProblemConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "labels/"
COLUMNS = ("inference_id", "label", "labelled_at")
#: When the label was stored (internal): breaks ties between equal ``labelled_at`` across uploads.
STORED_AT = "stored_at"
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_TRUE, _FALSE = frozenset({"true", "yes"}), frozenset({"false", "no"})
#: Integer targets with a declared range up to this wide have known classes (0..1, 1..5): others do not.
_MAX_CLASS_RANGE = 1000

Locate = Callable[[int], str]


# --- classes -------------------------------------------------------------------------------------------


def classes(problem: ProblemConfig) -> tuple[int, ...] | None:
    """The target's classes when the contract declares them (a bool, or an int with a small range)."""
    if problem.task != "classification":
        return None
    spec = problem.dataset.column(problem.target)
    if spec.type == "bool":
        return (0, 1)
    if spec.categories is not None:
        try:
            return tuple(sorted(int(c) for c in spec.categories))
        except ValueError:
            return None
    if spec.min is not None and spec.max is not None and spec.max - spec.min <= _MAX_CLASS_RANGE:
        return tuple(range(int(np.ceil(spec.min)), int(np.floor(spec.max)) + 1))
    return None


def positive_label(problem: ProblemConfig) -> int:
    """The positive class as mlcycle.modeling defines it: training casts the target to int64 and the
    positive probability is ``predict_proba[:, 1]``, i.e. the larger of two sorted classes (1 of 0/1)."""
    known = classes(problem)
    return known[-1] if known is not None and len(known) == 2 else 1


# --- parse ---------------------------------------------------------------------------------------------


def parse(data: bytes, filename: str, problem: ProblemConfig) -> pd.DataFrame:
    """``inference_id`` (str), ``label`` (int64 classes or float64 values), ``labelled_at`` (UTC, NaT
    when the file does not say); a ``ValueError`` names the line (row for Parquet) and column at fault."""
    try:
        raw, locate = _read(data, filename.lower())
        return _validate(raw, locate, problem)
    except (ValueError, OSError) as exc:  # parse errors of pandas and pyarrow are ValueErrors too
        raise ValueError(f"{filename}: {exc}") from None


def _read(data: bytes, name: str) -> tuple[pd.DataFrame, Locate]:
    if name.endswith(".gz"):
        data, name = gzip.decompress(data), name[:-3]
    if name.endswith(".csv"):
        return _read_csv(data)
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return _read_json_lines(data)
    if name.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data)), _rows
    raise ValueError("unknown label file type (use .csv, .jsonl or .parquet, optionally .gz)")


def _rows(position: int) -> str:
    return f"row {position + 1}"


def _read_csv(data: bytes) -> tuple[pd.DataFrame, Locate]:
    # Strings throughout: validation decides what a value means and reports the line it came from.
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skip_blank_lines=True)
    return frame, lambda position: f"line {position + 2}"  # line 1 is the header


def _read_json_lines(data: bytes) -> tuple[pd.DataFrame, Locate]:
    records, lines = [], []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"line {number}: not a JSON object")
        records.append(_from_model_monitor(record))
        lines.append(number)
    return pd.DataFrame.from_records(records), lambda position: f"line {lines[position]}"


def _from_model_monitor(record: dict[str, Any]) -> dict[str, Any]:
    """A Model Monitor ground-truth record as a flat one; other records pass unchanged."""
    truth, metadata = record.get("groundTruthData"), record.get("eventMetadata")
    if not isinstance(truth, dict) or not isinstance(metadata, dict):
        return record
    flat = {
        "inference_id": metadata.get("inferenceId") or metadata.get("eventId"),
        "label": truth.get("data"),
    }
    if "labelled_at" in record:
        flat["labelled_at"] = record["labelled_at"]
    return flat


def _validate(raw: pd.DataFrame, locate: Locate, problem: ProblemConfig) -> pd.DataFrame:
    label_column = _label_column(raw, problem)
    ids = _inference_ids(raw, locate)
    values = raw[label_column].reset_index(drop=True)
    if problem.task == "regression":
        label = _regression_labels(values, locate)
    else:
        label = _class_labels(values, locate, problem)
    return pd.DataFrame({"inference_id": ids, "label": label, "labelled_at": _labelled_at(raw, locate)})


def _label_column(raw: pd.DataFrame, problem: ProblemConfig) -> str:
    if "inference_id" not in raw.columns:
        raise ValueError(f"no 'inference_id' column (columns: {list(raw.columns)})")
    found = [c for c in dict.fromkeys(("label", problem.target)) if c in raw.columns]
    if not found:
        raise ValueError(
            f"no label column: name it 'label' or {problem.target!r} (columns: {list(raw.columns)})"
        )
    if len(found) > 1:
        raise ValueError(f"both 'label' and {problem.target!r} columns: keep one")
    return found[0]


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def _inference_ids(raw: pd.DataFrame, locate: Locate) -> pd.Series:
    ids = raw["inference_id"].reset_index(drop=True)
    blank = _blank(ids)
    if blank.any():
        raise ValueError(f"{locate(int(np.argmax(blank)))}: column 'inference_id' is empty")
    ids = ids.astype(str).str.strip()
    duplicated = ids.duplicated()
    if duplicated.any():
        position = int(np.argmax(duplicated))
        first = int(np.argmax((ids == ids[position]).to_numpy()))
        raise ValueError(
            f"{locate(position)}: column 'inference_id': {ids[position]!r} is labelled twice "
            f"(first at {locate(first)}); a file holds one label per inference"
        )
    return ids.astype(object)


def _numbers(values: pd.Series) -> pd.Series:
    as_text = values.astype(str).str.strip().str.lower()
    booleans = as_text.map(lambda v: 1.0 if v in _TRUE else 0.0 if v in _FALSE else np.nan)
    numbers = pd.to_numeric(values.where(booleans.isna(), booleans), errors="coerce")
    return numbers.astype("float64")


def _first_bad(mask: pd.Series, values: pd.Series, locate: Locate, why: str) -> None:
    if mask.any():
        position = int(np.argmax(mask.to_numpy()))
        shown = "empty" if _blank(values.iloc[[position]]).iloc[0] else repr(values.iloc[position])
        raise ValueError(f"{locate(position)}: column 'label': {shown} {why}")


def _regression_labels(values: pd.Series, locate: Locate) -> pd.Series:
    numbers = _numbers(values)
    _first_bad(~np.isfinite(numbers), values, locate, "is not a number")
    return numbers


def _class_labels(values: pd.Series, locate: Locate, problem: ProblemConfig) -> pd.Series:
    numbers = _numbers(values)
    known = classes(problem)
    expected = f"one of {', '.join(map(str, known))}" if known else "an integer class"
    _first_bad(~np.isfinite(numbers) | (numbers % 1 != 0), values, locate, f"is not a class ({expected})")
    if known is not None:
        outside = ~numbers.isin([float(k) for k in known])
        _first_bad(outside, values, locate, f"is not a class of {problem.target!r} ({expected})")
    return numbers.astype("int64")


def _labelled_at(raw: pd.DataFrame, locate: Locate) -> pd.Series:
    if "labelled_at" not in raw.columns:
        return pd.Series(pd.NaT, index=range(len(raw)), dtype="datetime64[us, UTC]")
    given = raw["labelled_at"].reset_index(drop=True)
    blank = _blank(given)
    parsed = pd.to_datetime(given.where(~blank), utc=True, errors="coerce", format="mixed")
    bad = parsed.isna() & ~blank
    if bad.any():
        position = int(np.argmax(bad.to_numpy()))
        raise ValueError(f"{locate(position)}: column 'labelled_at': {given[position]!r} is not a time")
    return parsed.astype("datetime64[us, UTC]")


# --- store and load ------------------------------------------------------------------------------------


def key(frame: pd.DataFrame, *, source: str) -> str:
    """Where :func:`store` keeps ``frame``: named by a digest of its content, so one file is one object."""
    if not _SOURCE.match(source):
        raise ValueError(f"source {source!r}: use letters, digits, '_', '.', '-' (up to 63)")
    canonical = frame.loc[:, list(COLUMNS)].sort_values("inference_id", kind="stable")
    digest = hashlib.sha256(canonical.to_csv(index=False).encode("utf-8")).hexdigest()[:32]
    return f"{PREFIX}{source}/{digest}.parquet"


def store(s3: S3Client, bucket: str, frame: pd.DataFrame, *, source: str) -> str:
    """Write parsed labels to ``s3://{bucket}/labels/...`` once and return the URI (a repeat writes nothing).

    Labels without ``labelled_at`` take the time they were first stored, so a later upload of a
    different label for the same inference wins."""
    object_key = key(frame, source=source)
    uri = f"s3://{bucket}/{object_key}"
    if exists(s3, bucket, object_key):
        return uri
    now = pd.Timestamp(datetime.now(UTC)).as_unit("us")
    stored = frame.loc[:, list(COLUMNS)].copy()
    stored["labelled_at"] = stored["labelled_at"].fillna(now)
    stored[STORED_AT] = now
    buffer = io.BytesIO()
    stored.to_parquet(buffer, index=False)
    s3.put_object(Bucket=bucket, Key=object_key, Body=buffer.getvalue(), ContentType="application/x-parquet")
    return uri


def exists(s3: S3Client, bucket: str, object_key: str) -> bool:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=object_key, MaxKeys=1).get("Contents", [])
    return any(item.get("Key") == object_key for item in listed)


def load(s3: S3Client, bucket: str) -> pd.DataFrame:
    """Every label under ``labels/``, the latest per inference id (``labelled_at``, then storage time)."""
    parts = [_read_stored(s3, bucket, item) for item in _objects(s3, bucket)]
    if not parts:
        return _empty()
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.sort_values(["labelled_at", STORED_AT], kind="stable")
    latest = frame.drop_duplicates("inference_id", keep="last").sort_values("inference_id")
    return latest.loc[:, list(COLUMNS)].reset_index(drop=True)


def _objects(s3: S3Client, bucket: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        found.extend(dict(item) for item in page.get("Contents", []) if item["Key"].endswith(".parquet"))
    return sorted(found, key=lambda item: (item["LastModified"], item["Key"]))


def _read_stored(s3: S3Client, bucket: str, item: dict[str, Any]) -> pd.DataFrame:
    body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    frame = pd.read_parquet(io.BytesIO(body))
    missing = [c for c in ("inference_id", "label") if c not in frame.columns]
    if missing:
        raise ValueError(f"s3://{bucket}/{item['Key']}: not a label file (no {missing})")
    # Files dropped by other tools may lack the times: the object's upload time stands in for both.
    modified = pd.Timestamp(item["LastModified"]).tz_convert(UTC).as_unit("us")
    for column in ("labelled_at", STORED_AT):
        times = frame[column] if column in frame.columns else pd.Series(pd.NaT, index=frame.index)
        frame[column] = pd.to_datetime(times, utc=True).astype("datetime64[us, UTC]").fillna(modified)
    frame["inference_id"] = frame["inference_id"].astype(str)
    return frame.loc[:, [*COLUMNS, STORED_AT]]


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "inference_id": pd.Series(dtype=object),
            "label": pd.Series(dtype="float64"),
            "labelled_at": pd.Series(dtype="datetime64[us, UTC]"),
        }
    )
