"""Batch transform's records in the embedded AWS: lines read in bounded memory, mini-batches, assembly and
the join of each record to its output, as SageMaker does them."""

from __future__ import annotations

import json

import pytest

from mlcycle.local.sagemaker import records
from mlcycle.local.sagemaker.records import Batch, RecordError


class Stream:
    """A body read in small pieces, recording the largest one asked for."""

    def __init__(self, data: bytes) -> None:
        self.data, self.largest = data, 0

    def read(self, size: int = -1) -> bytes:
        self.largest = max(self.largest, size)
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


def test_lines_keep_their_numbers_and_lose_their_ends() -> None:
    stream = Stream(b"a,1\nb,2\r\n\nc,3")
    lines = list(records.read_lines(stream, limit=100, chunk_bytes=2))
    assert lines == [(1, b"a,1"), (2, b"b,2"), (3, b""), (4, b"c,3")]
    assert stream.largest == 2  # never more than a chunk at a time


def test_a_line_longer_than_the_payload_limit_fails_without_being_read_whole() -> None:
    stream = Stream(b"ok\n" + b"x" * 1000 + b"\n")
    with pytest.raises(RecordError) as raised:
        list(records.read_lines(stream, limit=50, chunk_bytes=16))
    assert raised.value.line == 2 and "does not fit MaxPayloadInMB" in str(raised.value)
    assert len(stream.data) > 900  # it stopped reading soon after the limit


def test_multi_record_batches_fill_the_payload_and_skip_blank_lines() -> None:
    lines = iter([(1, b"aaaa"), (2, b""), (3, b"bbbb"), (4, b"cccc"), (5, b"  "), (6, b"dd")])
    found = list(records.batches(lines, multi_record=True, max_payload=10))
    assert [(b.records, b.lines) for b in found] == [
        ((b"aaaa", b"bbbb"), (1, 3)),
        ((b"cccc", b"dd"), (4, 6)),
    ]
    assert found[0].body == b"aaaa\nbbbb\n" and found[0].where == "lines 1-3"
    single = list(records.batches(iter([(1, b"a"), (2, b"b")]), multi_record=False, max_payload=10))
    assert [b.records for b in single] == [(b"a",), (b"b",)]


def test_answers_assemble_by_line() -> None:
    batch = Batch((b"1,2", b"3,4"), (1, 2))
    assert (
        records.assemble(batch, b"0\n1", "text/csv", input_type="text/csv", by_line=True, join=False)
        == b"0\n1\n"
    )
    assert (
        records.assemble(batch, b"0\n1\n", "text/csv", input_type="text/csv", by_line=True, join=False)
        == b"0\n1\n"
    )
    assert (
        records.assemble(batch, b"01", "text/csv", input_type="text/csv", by_line=False, join=False) == b"01"
    )


def test_csv_joins_by_appending_and_json_under_sagemaker_output() -> None:
    batch = Batch((b"1,a", b"2,b"), (1, 2))
    joined = records.assemble(
        batch, b"yes,0.9\nno,0.2\n", "text/csv", input_type="text/csv", by_line=True, join=True
    )
    assert joined == b"1,a,yes,0.9\n2,b,no,0.2\n"
    jsonl = Batch((b'{"id": 1, "x": 2}', b"[3]"), (1, 2))
    answer = b'{"prediction": 1}\n{"prediction": 0}\n'
    out = records.assemble(
        jsonl, answer, "application/jsonlines", input_type="application/jsonlines", by_line=True, join=True
    )
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": 1, "x": 2, "SageMakerOutput": {"prediction": 1}},
        {"SageMakerInput": [3], "SageMakerOutput": {"prediction": 0}},
    ]
    csv_to_json = records.join_record(b'1,"a,b"', b'{"p": 1}', "text/csv", "application/jsonlines")
    assert json.loads(csv_to_json) == {"SageMakerInput": ["1", "a,b"], "SageMakerOutput": {"p": 1}}


def test_a_join_needs_one_output_line_per_record() -> None:
    batch = Batch((b"1", b"2", b"3"), (4, 5, 7))
    with pytest.raises(RecordError, match="answered 2 lines for the 3 records of lines 4-7") as raised:
        records.assemble(batch, b"a\nb\n", "text/csv", input_type="text/csv", by_line=True, join=True)
    assert raised.value.line == 4
    with pytest.raises(RecordError, match="SingleRecord"):
        records.assemble(
            batch, b'{"predictions": []}', "application/json", input_type="text/csv", by_line=True, join=True
        )
    one = Batch((b'{"x": 1}',), (9,))
    joined = records.assemble(
        one,
        b'{"predictions": [1]}',
        "application/json",
        input_type="application/json",
        by_line=True,
        join=True,
    )
    assert json.loads(joined) == {"x": 1, "SageMakerOutput": {"predictions": [1]}}


def test_halves_keep_line_numbers() -> None:
    first, second = Batch((b"a", b"b", b"c"), (2, 3, 9)).halves()
    assert (first.lines, second.lines) == ((2,), (3, 9))
    assert Batch((b"raw\nbytes",), (1,), whole=True).body == b"raw\nbytes"
