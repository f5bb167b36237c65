"""The Arrow check of the CSV path agrees with the pandas check of the other formats, rule for rule."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlcycle.data.columnar import check_table, hash_strings
from mlcycle.data.contracts import KeyIndex, check
from mlcycle.example.churn import contract, generate

NOW = datetime(2026, 2, 1, tzinfo=UTC)


def _raw(rows: int = 80) -> pd.DataFrame:
    frame = generate(rows, seed=8)
    return frame.astype(object).where(frame.notna(), "").astype(str)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("tenure_months", "twelve"),
        ("tenure_months", "1.5"),
        ("tenure_months", "7.0"),  # a whole float: an int to the pandas rules, not to Arrow's cast
        ("tenure_months", " 9"),
        ("monthly_charges", "-1"),
        ("monthly_charges", "nan"),
        ("age", "150"),
        ("age", ""),
        ("age", "nan"),
        ("contract", "weekly"),
        ("contract", " one-year "),
        ("customer_id", ""),
        ("event_time", "yesterday-ish"),
        ("event_time", "2026-01-05"),
        ("event_time", "2026-01-05T10:00:00"),
        ("churned", "2"),
    ],
)
def test_the_arrow_check_agrees_with_the_pandas_check(column: str, value: str) -> None:
    # GIVEN a batch of text with one odd cell and a repeated key
    raw = _raw()
    raw.loc[5, column] = value
    raw.loc[40, "customer_id"] = raw.loc[3, "customer_id"]
    # WHEN both checks run on it
    expected = check(raw, contract(), seen_keys=KeyIndex(), now=NOW)
    rows = pd.RangeIndex(len(raw)).to_numpy()
    table = pa.Table.from_pandas(raw, preserve_index=False)
    good, bad, violations = check_table(table, contract(), rows, seen_keys=KeyIndex(), now=NOW)
    # THEN the same rows are bad for the same rules, and the good rows hold the same values
    assert [(v.row, v.column, v.rule) for v in violations] == [
        (v.row, v.column, v.rule) for v in expected.violations
    ]
    assert list(rows[bad]) == list(expected.bad.index)
    assert good.num_rows + int(bad.sum()) == len(raw)
    theirs = pa.Table.from_pandas(expected.good, preserve_index=False).cast(good.schema, safe=False)
    assert good.to_pylist() == theirs.to_pylist()


def test_string_hashes_depend_on_the_text_alone() -> None:
    values = ["c000-0000001", "", "a", "ab", "a" * 8, "a" * 9, "ÿ€", None, "c000-0000001"]
    whole = hash_strings(pa.array(values))
    assert whole[0] == whole[-1]  # equal text, equal hash
    assert whole[1] == whole[7]  # a missing key hashes as ""
    assert len(set(whole[:7].tolist())) == 7
    # the same text in another array (other offsets, other widths, a slice) hashes the same
    for part in (
        pa.array(values[2:5]),
        pa.array(values).slice(2, 3),
        pa.array(values[2:5], pa.large_string()),
    ):
        assert hash_strings(part).tolist() == whole[2:5].tolist()
    fixed = pa.array([f"c000-{i:07d}" for i in range(3)])
    mixed = pa.array(["x", *[f"c000-{i:07d}" for i in range(3)]]).slice(1)
    assert hash_strings(fixed).tolist() == hash_strings(mixed).tolist()


def test_string_hashes_of_a_million_similar_keys_do_not_collide() -> None:
    keys = pa.array([f"c{i // 100_000:03d}-{i:07d}" for i in range(1_000_000)])
    assert len(np.unique(hash_strings(keys))) == 1_000_000
