"""Contract rules one by one, and the accounting (no row lost or duplicated) as a property."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcycle.config import ColumnSpec, DatasetContract
from mlcycle.data.contracts import PARSE_ERROR, ContractError, KeyIndex, check
from mlcycle.example.churn import contract, generate


def _raw(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(str).replace({"<NA>": ""})


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return _raw(generate(200, seed=7))


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("tenure_months", "twelve", "type"),
        ("tenure_months", "1.5", "type"),
        ("monthly_charges", "-1", "range"),
        ("age", "150", "range"),
        ("contract", "weekly", "category"),
        ("customer_id", "", "not_null"),
        ("event_time", "yesterday-ish", "type"),
        ("churned", "2", "range"),
    ],
)
def test_each_rule_rejects_its_row(clean: pd.DataFrame, column: str, value: str, rule: str) -> None:
    # GIVEN a clean upload with one broken cell
    raw = clean.copy()
    raw.loc[3, column] = value
    # WHEN it is checked
    result = check(raw, contract())
    # THEN exactly that row is bad, for that rule
    assert [(v.row, v.column, v.rule) for v in result.violations] == [(3, column, rule)]
    assert len(result.good) == len(raw) - 1
    assert list(result.bad.index) == [3]


def test_nullable_column_accepts_empty(clean: pd.DataFrame) -> None:
    raw = clean.copy()
    raw.loc[4, "age"] = ""
    result = check(raw, contract())
    assert result.violations == []
    assert result.good["age"].isna().sum() >= 1


def test_duplicate_keys_across_chunks_are_rejected(clean: pd.DataFrame) -> None:
    seen: set[str] = set()
    first = check(clean.iloc[:100], contract(), seen_keys=seen)
    repeat = check(clean.iloc[:10], contract(), first_row=100, seen_keys=seen)
    assert first.violations == []
    assert {v.rule for v in repeat.violations} == {"unique"}
    assert len(repeat.good) == 0


def test_missing_column_is_a_contract_error(clean: pd.DataFrame) -> None:
    with pytest.raises(ContractError, match="missing columns: region"):
        check(clean.drop(columns=["region"]), contract())


def test_good_rows_are_typed(clean: pd.DataFrame) -> None:
    good = check(clean, contract()).good
    assert str(good["tenure_months"].dtype) == "Int64"
    assert str(good["event_time"].dtype).startswith("datetime64")


_SMALL = DatasetContract(
    name="small",
    key="id",
    columns=(
        ColumnSpec(name="id", type="string"),
        ColumnSpec(name="x", type="int", min=0, max=10),
        ColumnSpec(name="c", type="string", categories=("a", "b")),
    ),
)
_cells = st.tuples(
    st.sampled_from(["0", "5", "10", "11", "-1", "x", ""]),
    st.sampled_from(["a", "b", "z", ""]),
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_cells, min_size=0, max_size=60), chunk=st.integers(1, 25))
def test_every_row_is_either_good_or_bad_once(rows: list[tuple[str, str]], chunk: int) -> None:
    frame = pd.DataFrame(
        {"id": [f"k{i % 40}" for i in range(len(rows))], "x": [r[0] for r in rows], "c": [r[1] for r in rows]}
    )
    seen: set[str] = set()
    good = bad = 0
    bad_rows: list[int] = []
    for start in range(0, len(frame), chunk):
        result = check(frame.iloc[start : start + chunk], _SMALL, first_row=start, seen_keys=seen)
        good += len(result.good)
        bad += len(result.bad)
        bad_rows.extend(result.bad.index)
    assert good + bad == len(frame)
    assert len(set(bad_rows)) == len(bad_rows)


_FRESH = DatasetContract(
    name="fresh",
    event_time="at",
    max_age_days=7,
    columns=(ColumnSpec(name="id", type="string"), ColumnSpec(name="at", type="timestamp")),
)


def test_freshness_rejects_rows_older_than_the_max_age() -> None:
    # GIVEN a contract that accepts event times of the last 7 days, judged at a fixed time
    now = pd.Timestamp("2026-03-10T12:00:00Z").to_pydatetime()
    raw = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "at": ["2026-03-09T00:00:00Z", "2026-03-03T12:00:00Z", "2026-03-01T00:00:00Z"],
        }
    )
    # WHEN the rows are checked
    result = check(raw, _FRESH, now=now)
    # THEN only the row older than 7 days breaks freshness (the one exactly 7 days old is fresh)
    assert [(v.row, v.column, v.rule) for v in result.violations] == [(2, "at", "freshness")]
    assert list(result.good["id"]) == ["a", "b"]


def test_freshness_needs_an_event_time() -> None:
    with pytest.raises(ValueError, match="max_age_days needs an event_time"):
        DatasetContract(name="x", max_age_days=1, columns=(ColumnSpec(name="id", type="string"),))


def test_a_record_the_reader_could_not_parse_breaks_only_the_parse_rule() -> None:
    # GIVEN a chunk with one good row and one row a reader marked as unparseable
    raw = pd.DataFrame({"id": ["k1", ""], "x": ["1", ""], "c": ["a", ""], PARSE_ERROR: ["", "{not json"]})
    # WHEN it is checked
    result = check(raw, _SMALL)
    # THEN the broken record is bad for `parse` alone, with its raw text as the value
    assert [(v.row, v.rule, v.value) for v in result.violations] == [(1, "parse", "{not json")]
    assert len(result.good) == 1


def test_key_index_finds_keys_of_earlier_chunks() -> None:
    index = KeyIndex()
    index.add(KeyIndex.hashes(pd.Series(["a", "b"])))
    index.add(KeyIndex.hashes(pd.Series(["c", "a"])))
    assert len(index) == 3
    assert list(index.contains(KeyIndex.hashes(pd.Series(["a", "z", "c"])))) == [True, False, True]


def test_key_index_keeps_every_key_across_many_batches() -> None:
    # GIVEN keys added in 40 batches of uneven sizes (the index merges its sorted runs as it grows)
    index = KeyIndex()
    batches = [[f"k{b}-{i}" for i in range(1 + b * 7 % 50)] for b in range(40)]
    for keys in batches:
        hashes = KeyIndex.hashes(pd.Series(keys))
        # THEN no key of a batch was seen before it, and each is found after it is added
        assert not index.contains(hashes).any()
        index.add(hashes)
        assert index.contains(hashes).all()
    everything = [k for keys in batches for k in keys]
    assert len(index) == len(everything)
    assert index.contains(KeyIndex.hashes(pd.Series(everything))).all()
    assert not index.contains(KeyIndex.hashes(pd.Series(["k-missing", "z"]))).any()
