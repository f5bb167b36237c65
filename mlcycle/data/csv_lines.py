"""Read a CSV in byte blocks with Arrow, setting aside the lines that cannot be rows.

A line-level fault costs its line, not the upload: a ragged line (too few or too many fields), a line
whose quote is never closed (the reader resynchronises at the next line) and a line with bytes that are
not UTF-8 each become a :class:`BadLine` with its line number (1-based, the header is line 1) and reason.
Only a file whose header cannot be read fails as a whole.

Each block is cut at a line end and checked before Arrow parses it: a C-speed search says whether it has
quotes, blank lines or undecodable bytes at all, and only a block that does is looked at line by line
(quotes by a NumPy count per line). Ragged lines come from Arrow's ``invalid_row_handler``, located in
their block by their text, since Arrow does not number rows when it uses threads. Memory is bounded by
the block size.

One consequence of resynchronising at line ends: a quoted field that holds a line break is quarantined
as two bad lines (RFC 4180 allows it; uploads of ML rows rarely have it, and no line is lost).
"""

from __future__ import annotations

import csv
import gzip
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

T = TypeVar("T")

#: Bytes read per block: large enough for Arrow's threads, small enough to bound memory.
BLOCK_BYTES = 8 << 20
_NEWLINE, _QUOTE = 10, 34
_TEXT_LIMIT = 500  # of a bad line's text kept in the report


@dataclass(frozen=True)
class BadLine:
    row: int  # the record's ordinal (0-based, every non-blank line after the header is a record)
    line: int
    rule: str  # "ragged", "unterminated_quote" or "encoding"
    reason: str
    text: str


@dataclass
class Block:
    """The rows Arrow parsed from one block (all text), where each came from, and the block's bad lines."""

    table: pa.Table
    rows: np.ndarray  # record ordinal of each row of ``table``
    lines: np.ndarray  # file line number of each row of ``table``
    bad: list[BadLine] = field(default_factory=list)
    records: int = 0  # the block's records: its lines less blank ones
    line_count: int = 0


def header(path: Path, gzipped: bool) -> list[str]:
    """The column names of the file's first line; a header that cannot be read fails the whole file."""
    with _open(path, gzipped) as fh:
        first = fh.readline()
    text = first.decode("utf-8").rstrip("\r\n")  # UnicodeDecodeError: the whole file is unreadable
    if not text.strip():
        raise pd.errors.EmptyDataError("No columns to parse from file")
    return next(csv.reader([text]))


def blocks(
    path: Path,
    gzipped: bool,
    *,
    block_bytes: int = BLOCK_BYTES,
    use_threads: bool = True,
    first_row: int = 0,
    first_line: int = 2,
) -> Iterator[Block]:
    """The file's data lines as blocks of rows; ``first_row``/``first_line`` number its first data line
    (a chunk of a larger upload starts past line 2)."""
    names = header(path, gzipped)

    def parsed() -> Iterator[Block]:
        row, line = first_row, first_line
        with _open(path, gzipped) as fh:
            fh.readline()
            for raw in _line_blocks(fh, block_bytes):
                block = _parse(raw, names, row, line, use_threads)
                row += block.records
                line += block.line_count
                yield block

    # With threads, the next block is read and parsed while the caller checks and writes this one.
    return ahead(parsed()) if use_threads else parsed()


def ahead(items: Iterator[T]) -> Iterator[T]:
    """``items`` produced one ahead on a thread (Arrow and NumPy release the GIL while they work)."""
    blocks = items
    ready: queue.Queue[tuple[T | None, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for block in blocks:
                while not stop.is_set():
                    try:
                        ready.put((block, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put((None, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put((None, exc))

    worker = threading.Thread(target=produce, name="csv-blocks", daemon=True)
    worker.start()
    try:
        while True:
            block, error = ready.get()
            if error is not None:
                raise error
            if block is None:
                return
            yield block
    finally:
        stop.set()
        worker.join()


def _open(path: Path, gzipped: bool) -> IO[bytes]:
    # The callers hold it in a `with`.
    fh: IO[bytes] = gzip.open(path, "rb") if gzipped else path.open("rb")  # type: ignore[assignment]  # noqa: SIM115
    return fh


def _line_blocks(fh: IO[bytes], size: int) -> Iterator[bytes]:
    """Blocks of whole lines (the last one may lack its line end)."""
    carry = b""
    while True:
        data = fh.read(size)
        if not data:
            if carry:
                yield carry
            return
        data = carry + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data  # a line longer than a block: read on
            continue
        carry = data[cut:]
        yield data[:cut]


def _starts(raw: bytes) -> np.ndarray:
    """Offset of every line's start, and one past the last line's end."""
    ends = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == _NEWLINE) + 1
    if not len(ends) or ends[-1] != len(raw):
        ends = np.append(ends, len(raw))
    return np.concatenate(([0], ends))


def _has_blank(raw: bytes) -> bool:
    if raw.startswith((b"\n", b"\r\n")) or b"\n\n" in raw:
        return True
    return b"\r" in raw and b"\n\r\n" in raw


def _blank_lines(raw: bytes, starts: np.ndarray) -> np.ndarray:
    """Lines that are empty: Arrow skips them and they hold no record."""
    lengths = np.diff(starts)
    short = np.flatnonzero(lengths <= 2)
    return np.array(
        [i for i in short if raw[starts[i] : starts[i + 1]] in (b"\n", b"\r\n", b"")], dtype=np.int64
    )


def _line_text(raw: bytes, starts: np.ndarray, i: int) -> bytes:
    return raw[starts[i] : starts[i + 1]].rstrip(b"\r\n")


def _bad_bytes(raw: bytes, starts: np.ndarray) -> dict[int, tuple[str, str]]:
    try:
        raw.decode("utf-8")
        return {}
    except UnicodeDecodeError:
        pass
    found = {}
    for i in range(len(starts) - 1):
        text = _line_text(raw, starts, i)
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as exc:
            found[i] = ("encoding", f"byte {exc.start + 1} of the line is not UTF-8 ({exc.reason})")
    return found


def _open_quotes(raw: bytes, starts: np.ndarray) -> dict[int, tuple[str, str]]:
    """Lines that end inside a quoted field. An odd count of quote characters makes a line a candidate;
    a quote inside an unquoted field is literal (as Arrow and Python's csv read it), so candidates are
    confirmed by following the quoting state along the line."""
    if b'"' not in raw:
        return {}
    quotes = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == _QUOTE)
    per_line = np.diff(np.searchsorted(quotes, starts))
    found = {}
    for i in np.flatnonzero(per_line % 2):
        if _ends_quoted(_line_text(raw, starts, int(i))):
            found[int(i)] = ("unterminated_quote", "a quoted field is not closed before the line ends")
    return found


def _ends_quoted(line: bytes) -> bool:
    quoted, at_field_start, i = False, True, 0
    while i < len(line):
        c = line[i]
        if quoted:
            if c == _QUOTE:
                if i + 1 < len(line) and line[i + 1] == _QUOTE:
                    i += 1  # an escaped quote
                else:
                    quoted = False
        elif c == _QUOTE and at_field_start:
            quoted = True
        at_field_start = c == ord(",") and not quoted
        i += 1
    return quoted


def _parse(raw: bytes, names: list[str], first_row: int, first_line: int, use_threads: bool) -> Block:
    line_count = raw.count(b"\n") + (not raw.endswith(b"\n"))
    try:
        raw.decode("utf-8")
        undecodable = False
    except UnicodeDecodeError:
        undecodable = True
    read: tuple[pa.Table, list[tuple[str, int]]] | None = None
    if not undecodable and b'"' not in raw:
        # The common block: Arrow made a row of every line, so none was ragged or blank.
        read = _read(raw, names, use_threads)
        if read[0].num_rows == line_count:
            at = np.arange(line_count)
            return Block(read[0], first_row + at, first_line + at, [], line_count, line_count)
    starts = _starts(raw)
    bad = _bad_bytes(raw, starts) if undecodable else {}
    bad.update({i: r for i, r in _open_quotes(raw, starts).items() if i not in bad})
    data = raw
    if bad:  # the good lines only, in order
        data = b"".join(raw[starts[i] : starts[i + 1]] for i in range(len(starts) - 1) if i not in bad)
        if data and not data.endswith(b"\n"):
            data += b"\n"
    table, ragged = read if read is not None and data is raw else _read(data, names, use_threads)
    for text, fields in ragged:
        for i in _locate(raw, starts, text.encode("utf-8"), bad):
            bad[i] = ("ragged", f"{fields} fields, expected {len(names)}")
    blank_at = _blank_lines(raw, starts) if _has_blank(raw) else np.empty(0, dtype=np.int64)
    skipped = np.zeros(len(starts) - 1, dtype=bool)
    skipped[list(bad)] = True
    skipped[blank_at] = True
    # Ordinal of each line among the block's records (blank lines hold none).
    record = np.cumsum(~np.isin(np.arange(len(skipped)), blank_at)) - 1
    kept = np.flatnonzero(~skipped)
    if len(kept) != table.num_rows:
        raise ValueError(
            f"CSV lines {first_line}-{first_line + len(skipped) - 1}: {table.num_rows} rows parsed from "
            f"{len(kept)} lines"  # a quoting Arrow and the line checks read differently: the file goes whole
        )
    bad_lines = [
        BadLine(
            first_row + int(record[i]),
            first_line + i,
            rule,
            reason,
            _line_text(raw, starts, i).decode("utf-8", errors="replace")[:_TEXT_LIMIT],
        )
        for i, (rule, reason) in sorted(bad.items())
    ]
    records = line_count - len(blank_at)
    return Block(table, first_row + record[kept], first_line + kept, bad_lines, records, line_count)


def _read(data: bytes, names: list[str], use_threads: bool) -> tuple[pa.Table, list[tuple[str, int]]]:
    """Arrow's parse of a block of lines, all text, and the (text, field count) of each ragged line."""
    ragged: list[tuple[str, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        ragged.append((row.text, row.actual_columns))
        return "skip"

    table = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(
            column_names=names, use_threads=use_threads, block_size=max(len(data), 1 << 16)
        ),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    return table, ragged


def _locate(raw: bytes, starts: np.ndarray, text: bytes, known: dict[int, tuple[str, str]]) -> list[int]:
    """Lines (indexes in the block) whose whole text is ``text`` and not already known as bad."""
    found, position = [], raw.find(text)
    while position >= 0:
        i = int(np.searchsorted(starts, position, side="right")) - 1
        end = position + len(text)
        whole = end == len(raw) or raw[end : end + 1] == b"\n" or raw[end : end + 2] == b"\r\n"
        if starts[i] == position and whole and i not in known:
            found.append(i)
            break  # Arrow reports each ragged line once: one line per report
        position = raw.find(text, position + 1)
    if not found:
        raise ValueError(f"a ragged CSV row could not be placed in its block: {text[:80]!r}")
    return found
