"""Batch transform's records, as SageMaker handles them: an object's stream split into records by line in
bounded memory (``SplitType: Line``), records packed into mini-batches up to ``MaxPayloadInMB``
(``BatchStrategy: MultiRecord``) or sent one by one (``SingleRecord``), and the model's answers assembled
into the object's ``.out`` (``AssembleWith: Line``), each record joined to its input when asked
(``DataProcessing.JoinSource: Input``). Pure functions over bytes: the job runner (``transform``) does the
I/O.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
#: Answers with one line per record: the only ones a multi-record batch can be joined to its input by.
LINE_TYPES = frozenset({CSV, JSONLINES, "application/x-jsonlines"})
JSON_TYPES = frozenset({JSON, JSONLINES, "application/x-jsonlines"})
#: What a stream is read by: enough to find line ends without holding the object.
CHUNK_BYTES = 1 << 20


class RecordError(Exception):
    """A record the job cannot transform: ``line`` is its line in the object (1-based)."""

    def __init__(self, message: str, line: int, where: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        #: Where in the object, as the FailureReason says it (``line 17``, ``lines 1-40``).
        self.where = where or f"line {line}"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def read_lines(
    stream: Readable, *, limit: int, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` for every line of ``stream`` (ends stripped, blank lines included, so numbers
    are the file's), holding at most one chunk plus one line: a line longer than ``limit`` bytes raises
    instead of growing without bound."""
    number, pending = 0, b""
    while chunk := stream.read(chunk_bytes):
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            number += 1
            _check_size(line, number, limit)
            yield number, line.removesuffix(b"\r")
        _check_size(pending, number + 1, limit)
    if pending:
        yield number + 1, pending.removesuffix(b"\r")


def _check_size(line: bytes, number: int, limit: int) -> None:
    if len(line) > limit:
        raise RecordError(
            f"a record of more than {limit:,} bytes does not fit MaxPayloadInMB={limit // (1 << 20)}", number
        )


@dataclass(frozen=True)
class Batch:
    """Records sent in one request, with their line numbers; ``whole`` is an unsplit object."""

    records: tuple[bytes, ...]
    lines: tuple[int, ...]
    whole: bool = False

    @property
    def body(self) -> bytes:
        return self.records[0] if self.whole else b"".join(record + b"\n" for record in self.records)

    @property
    def where(self) -> str:
        first, last = self.lines[0], self.lines[-1]
        return f"line {first}" if first == last else f"lines {first}-{last}"

    def halves(self) -> tuple[Batch, Batch]:
        half = len(self.records) // 2
        return (
            Batch(self.records[:half], self.lines[:half]),
            Batch(self.records[half:], self.lines[half:]),
        )


def batches(lines: Iterator[tuple[int, bytes]], *, multi_record: bool, max_payload: int) -> Iterator[Batch]:
    """Mini-batches of the non-blank lines: as many records as fit ``max_payload`` bytes (newlines
    counted) with ``multi_record``, else one record each."""
    records: list[bytes] = []
    numbers: list[int] = []
    size = 0
    for number, line in lines:
        if not line.strip():
            continue  # a blank line is no record
        if records and (not multi_record or size + len(line) + 1 > max_payload):
            yield Batch(tuple(records), tuple(numbers))
            records, numbers, size = [], [], 0
        records.append(line)
        numbers.append(number)
        size += len(line) + 1
    if records:
        yield Batch(tuple(records), tuple(numbers))


def assemble(
    batch: Batch, answer: bytes, answer_type: str, *, input_type: str, by_line: bool, join: bool
) -> bytes:
    """What one request adds to the ``.out``: the answer (ending in a newline when assembled by line), or
    each record joined to its output line."""
    if not join:
        return answer + b"\n" if by_line and not answer.endswith(b"\n") else answer
    outputs = split_answer(batch, answer, answer_type)
    joined = []
    for record, output, number in zip(batch.records, outputs, batch.lines, strict=True):
        try:
            joined.append(join_record(record, output, input_type, answer_type) + b"\n")
        except ValueError as error:  # JSON that the model read but that does not join (or a JSON answer)
            raise RecordError(f"cannot join the input to its output: {error}", number) from None
    return b"".join(joined)


def split_answer(batch: Batch, answer: bytes, answer_type: str) -> list[bytes]:
    """One output per record: the answer's lines, or the whole answer of a one-record request."""
    if len(batch.records) == 1 and media_type(answer_type) not in LINE_TYPES:
        return [answer.strip()]
    if media_type(answer_type) not in LINE_TYPES:
        raise RecordError(
            f"JoinSource Input needs one output line per record, and the model answered {answer_type} for "
            f"{len(batch.records)} records: ask for Accept {CSV} or {JSONLINES}, or use BatchStrategy "
            "SingleRecord",
            batch.lines[0],
        )
    outputs = [line.removesuffix(b"\r") for line in answer.split(b"\n")]
    while outputs and not outputs[-1].strip():
        outputs.pop()
    if len(outputs) != len(batch.records):
        raise RecordError(
            f"the model answered {len(outputs)} lines for the {len(batch.records)} records of {batch.where}: "
            "JoinSource Input needs one output line per record",
            batch.lines[0],
        )
    return outputs


def join_record(record: bytes, output: bytes, input_type: str, output_type: str) -> bytes:
    """SageMaker's join: CSV output appended to a CSV row; otherwise JSON, the output under
    ``SageMakerOutput`` of the input object (or beside the input under ``SageMakerInput``)."""
    kind, out_kind = media_type(input_type), media_type(output_type)
    if kind == CSV and out_kind == CSV:
        return record + b"," + output
    value: Any
    if kind == CSV:
        value = next(csv.reader(io.StringIO(record.decode("utf-8", "replace"))), [])
    else:
        value = json.loads(record)
    result = json.loads(output) if out_kind in JSON_TYPES else output.decode("utf-8", "replace")
    if isinstance(value, dict):
        return json.dumps({**value, "SageMakerOutput": result}).encode()
    return json.dumps({"SageMakerInput": value, "SageMakerOutput": result}).encode()
