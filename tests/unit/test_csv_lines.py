"""The CSV reader's line-level faults: each bad line is set aside with its line number and reason, the
file's other rows are kept, and rows in = curated + quarantined."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlcycle.data.csv_lines import blocks
from mlcycle.data.prepare import prepare_file
from mlcycle.example.churn import contract, generate

ROWS = 60


def _lines() -> list[bytes]:
    """A clean churn CSV of ``ROWS`` rows as lines; index i is file line i + 1 (the header is line 1)."""
    frame = generate(ROWS, seed=5).astype({"age": "string"})
    return frame.to_csv(index=False).encode().splitlines()


def _write(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "upload.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _prepare(path: Path, tmp_path: Path, block_bytes: int) -> tuple[pd.DataFrame, pd.DataFrame, list]:  # type: ignore[type-arg]
    sinks = prepare_file(path, contract(), tmp_path, block_bytes=block_bytes)
    curated = pd.read_parquet(sinks.curated_path)
    quarantined = pd.read_csv(sinks.bad_path, dtype=str, keep_default_na=False)
    # Row accounting: every record is curated or quarantined exactly once.
    assert len(curated) == sinks.curated_rows and len(quarantined) == sinks.bad_rows
    return curated, quarantined, sinks.violations


# Block sizes: the whole file in one block, and blocks of a few lines (faults at block edges).
BLOCKS = pytest.mark.parametrize("block_bytes", [1 << 20, 350])


@BLOCKS
def test_a_ragged_line_is_quarantined_and_the_other_rows_curated(tmp_path: Path, block_bytes: int) -> None:
    # GIVEN a CSV whose line 7 has three fields and line 40 eleven
    lines = _lines()
    lines[6] = b"c-short,2026-01-01 00:00:00+00:00,3"
    lines[39] = lines[39] + b",extra"
    # WHEN it is prepared
    curated, quarantined, violations = _prepare(_write(tmp_path, lines), tmp_path, block_bytes)
    # THEN both lines are quarantined with their line numbers and why, the 58 others curated
    assert [(v.line, v.rule, v.reason) for v in violations] == [
        (7, "ragged", "3 fields, expected 10"),
        (40, "ragged", "11 fields, expected 10"),
    ]
    assert quarantined["_line"].tolist() == ["7", "40"]
    assert quarantined["_parse_error"].tolist() == [lines[6].decode(), lines[39].decode()]
    assert len(curated) + len(quarantined) == ROWS and len(curated) == ROWS - 2
    assert lines[6].split(b",")[0].decode() not in set(curated["customer_id"])


@BLOCKS
def test_an_unterminated_quote_costs_its_line_alone(tmp_path: Path, block_bytes: int) -> None:
    # GIVEN a CSV whose line 20 opens a quote it never closes, in the middle of the file
    lines = _lines()
    lines[19] = lines[19].replace(b",", b',"', 1)
    # WHEN it is prepared
    curated, quarantined, violations = _prepare(_write(tmp_path, lines), tmp_path, block_bytes)
    # THEN the reader resynchronises at line 21: only line 20 is quarantined
    assert [(v.line, v.row, v.rule) for v in violations] == [(20, 18, "unterminated_quote")]
    assert quarantined["_line"].tolist() == ["20"]
    assert len(curated) == ROWS - 1
    assert lines[20].split(b",")[0].decode() in set(curated["customer_id"])


@BLOCKS
def test_undecodable_bytes_cost_their_line_alone(tmp_path: Path, block_bytes: int) -> None:
    # GIVEN a CSV with bytes that are not UTF-8 on lines 3 and 50
    lines = _lines()
    lines[2] = lines[2][:4] + b"\xff\xfe" + lines[2][4:]
    lines[49] = lines[49] + b"\xe9"
    # WHEN it is prepared
    curated, quarantined, violations = _prepare(_write(tmp_path, lines), tmp_path, block_bytes)
    # THEN both lines are quarantined for their encoding, with where the bad byte is
    assert [(v.line, v.rule) for v in violations] == [(3, "encoding"), (50, "encoding")]
    assert violations[0].reason is not None and violations[0].reason.startswith("byte 5 of the line")
    assert len(curated) == ROWS - 2 and len(quarantined) == 2


def test_every_fault_at_once_with_contract_breaks_and_blank_lines(tmp_path: Path) -> None:
    # GIVEN line-level faults, a contract break (line 30) and two blank lines (after line 15, at the end)
    lines = _lines()
    lines[29] = lines[29].replace(b",month-to-month,", b",weekly,").replace(b",one-year,", b",weekly,")
    lines[29] = lines[29].replace(b",two-year,", b",weekly,")
    lines[9] = b"only,two"
    lines[24] = lines[24].replace(b",", b',"', 1)
    lines[44] = lines[44] + b"\xff"
    lines.insert(15, b"")
    lines.append(b"")
    # WHEN it is prepared in small blocks
    curated, quarantined, violations = _prepare(_write(tmp_path, lines), tmp_path, 400)
    # THEN each bad line is reported at its line of the file (the blank line shifts those after it)
    assert [(v.line, v.rule) for v in violations] == [
        (10, "ragged"),
        (26, "unterminated_quote"),
        (31, "category"),
        (46, "encoding"),
    ]
    # AND its row is its record's ordinal (blank lines hold no record)
    assert [v.row for v in violations] == [8, 23, 28, 43]
    assert len(curated) + len(quarantined) == ROWS and len(quarantined) == 4


def test_blocks_number_rows_and_lines_from_a_chunk_start(tmp_path: Path) -> None:
    # GIVEN a chunk of a larger upload starting at record 1000 (line 1002), one line ragged
    lines = _lines()
    lines[3] = b"a,b"
    path = _write(tmp_path, lines)
    # WHEN it is read in blocks numbered from there
    read = list(blocks(path, False, block_bytes=300, first_row=1000, first_line=1002))
    # THEN rows and lines continue the upload's numbering, and every line is a row or a bad line
    rows = [int(r) for b in read for r in b.rows]
    bad = [(x.row, x.line) for b in read for x in b.bad]
    assert bad == [(1002, 1004)]
    assert sorted([*rows, 1002]) == list(range(1000, 1000 + ROWS))
    assert sum(b.table.num_rows for b in read) == ROWS - 1
