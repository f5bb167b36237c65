"""Read an upload in bounded chunks of text-valued rows: JSON lines or Parquet, each also gzipped.

The format comes from the content where it says it (gzip and Parquet have magic bytes) and from the
name otherwise (``.jsonl``/``.ndjson``/``.json`` are JSON lines, anything else is CSV). CSV is read by
:mod:`mlcycle.data.csv_lines` (Arrow, line-level faults set aside) and checked on Arrow columns; here every
chunk is a DataFrame whose values are text (or missing), the form the pandas contract check parses.
Memory is bounded by ``chunk_rows``: JSON lines stream, Parquet is read one batch of row groups at a time
(a gzipped Parquet file is first inflated to local disk, since Parquet needs random access).
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlcycle.data.contracts import PARSE_ERROR

Format = Literal["csv", "jsonl", "parquet"]
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def detect(path: Path, name: str = "") -> tuple[Format, bool]:
    """(format, gzipped) of a local file; ``name`` is the upload's key, for the suffix."""
    with path.open("rb") as fh:
        head = fh.read(4)
    gzipped = head[:2] == GZIP_MAGIC
    if gzipped:
        try:
            with gzip.open(path, "rb") as inner:
                head = inner.read(4)
        except (OSError, EOFError):
            head = b""  # a broken gzip: the reader will raise and the file goes whole to quarantine
    if head == PARQUET_MAGIC:
        return "parquet", gzipped
    base = name.lower().removesuffix(".gz")
    return ("jsonl" if base.endswith(JSON_SUFFIXES) else "csv"), gzipped


def read_chunks(
    path: Path, chunk_rows: int, *, name: str = "", columns: Sequence[str] = ()
) -> Iterator[pd.DataFrame]:
    """Chunks of at most ``chunk_rows`` rows, every value as text ("" when missing).

    ``columns`` (the contract's) are always present in JSON-lines chunks, so a record that lacks a
    field breaks ``not_null`` instead of the whole upload.
    """
    fmt, gzipped = detect(path, name)
    if fmt == "parquet":
        return _parquet_chunks(_inflated(path) if gzipped else path, chunk_rows)
    if fmt == "jsonl":
        return _jsonl_chunks(path, gzipped, chunk_rows, columns)
    # A CSV read here would lose the lines that cannot be rows: it goes through prepare.check_csv.
    raise NotImplementedError("CSV uploads are read by mlcycle.data.csv_lines (prepare.check_csv)")


def _jsonl_chunks(
    path: Path, gzipped: bool, chunk_rows: int, columns: Sequence[str]
) -> Iterator[pd.DataFrame]:
    with gzip.open(path, "rt", encoding="utf-8") if gzipped else path.open(encoding="utf-8") as fh:
        batch: list[dict[str, str]] = []
        for line in fh:
            if not line.strip():
                continue  # a blank line holds no record
            batch.append(_record(line))
            if len(batch) == chunk_rows:
                yield _frame(batch, columns)
                batch = []
        if batch:
            yield _frame(batch, columns)


def _record(line: str) -> dict[str, str]:
    try:
        value = json.loads(line)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return {PARSE_ERROR: line.rstrip("\r\n")}
    return {str(k): _text(v) for k, v in value.items()}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _frame(records: list[dict[str, str]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    extra = [c for c in frame.columns if c not in columns]
    return frame.reindex(columns=[*columns, *extra]).fillna("")


def _inflated(path: Path) -> Path:
    target = path.with_name(path.name + ".inflated")
    with gzip.open(path, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)  # streamed: memory stays at the buffer size
    return target


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
        yield pd.DataFrame({name: _arrow_text(batch.column(i)) for i, name in enumerate(batch.schema.names)})


def _arrow_text(column: pa.Array) -> pd.Series:
    """One Parquet column as text: Arrow's vectorised cast, or JSON for nested values it cannot cast."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    try:
        text = pc.cast(column, pa.string())  # booleans become "true"/"false", timestamps ISO text
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pd.Series([_text(v) for v in column.to_pylist()], dtype="object")
    series: pd.Series = text.to_pandas().astype("object").fillna("")
    return series


def count_records(path: Path, name: str = "") -> int:
    """Records in a file that could not be read as a whole, for the accounting: Parquet's row count
    from its footer, else the lines that can be read (less a CSV header), at least 0."""
    try:
        fmt, gzipped = detect(path, name)
        if fmt == "parquet" and not gzipped:
            return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # a file this broken counts by its lines below
        fmt, gzipped = "csv", False
    lines = 0
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as fh:
            for line in fh:
                lines += bool(line.strip())
    except (OSError, EOFError):
        pass  # a truncated gzip: count what could be inflated
    return max(lines - (fmt == "csv"), 0)
