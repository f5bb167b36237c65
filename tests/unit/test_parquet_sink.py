"""The curated Parquet sink: the same file written in the caller's thread or its own, errors never lost."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle.data.parquet_sink import ParquetSink


def _table(start: int, rows: int = 3) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + rows), pa.int64()), "x": [0.5] * rows})


@pytest.mark.parametrize("background", [False, True])
def test_tables_are_written_in_order(tmp_path: Path, background: bool) -> None:
    sink = ParquetSink(tmp_path / "curated.parquet", background=background)
    for start in (0, 3, 6):
        sink.write(_table(start))
    sink.close()
    assert pq.read_table(tmp_path / "curated.parquet")["id"].to_pylist() == list(range(9))


def test_an_error_of_the_background_writer_reaches_the_caller(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "curated.parquet", background=True)
    sink.write(_table(0))
    sink.write(pa.table({"id": ["not a number"], "x": [1.0]}))  # cannot cast to the file's schema
    with pytest.raises(pa.ArrowInvalid):
        for start in range(3, 300, 3):  # the error surfaces at a later write, or at close at the latest
            sink.write(_table(start))
        sink.close()
