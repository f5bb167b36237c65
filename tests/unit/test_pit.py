"""Point-in-time correctness of every engine against a brute-force reference, on random data: the SQL
builder's two formulations run by DuckDB (ASOF on the keys and on integer key codes, and the Athena window
text) and the sorted-search engine that is the store's embedded default.

The data is drawn on a coarse minute grid so that ties (equal event times, equal created times, entity
rows exactly at a feature's time or exactly at the TTL edge) are frequent, and feature rows arrive in
any order (late and out-of-order records).
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyarrow import ipc

from mlcycle.config import FeatureSpec, FeatureViewSpec
from mlcycle.features import search, snapshots, sql
from mlcycle.features.engines import DuckDBEngine
from mlcycle.features.search import SortedSearchEngine
from mlcycle.features.snapshots import Snapshot
from mlcycle.features.store import _encode_keys

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
ENGINE = DuckDBEngine(threads=1)
#: Every way the join runs: the SQL builder's ASOF text (on the keys, on integer key codes), its window
#: text (Athena's; DuckDB runs it here) and the sorted-search engine.
#: ``search-ranked``: the sorted-search engine with a tiny key limit, so that it takes its fallbacks for
#: combined keys that would overflow int64 (times replaced by ranks).
#: ``snapshot``: the sorted-search engine over the views' snapshots (built, written as Arrow IPC, read
#: back); ``snapshot-ranked`` with the tiny key limit, where snapshots carry no search keys.
Engine = Literal["duckdb", "duckdb-codes", "athena", "search", "search-ranked", "snapshot", "snapshot-ranked"]
ENGINES: tuple[Engine, ...] = (
    "duckdb",
    "duckdb-codes",
    "athena",
    "search",
    "search-ranked",
    "snapshot",
    "snapshot-ranked",
)


def _view(name: str, *, created: bool, ttl_minutes: int | None) -> FeatureViewSpec:
    return FeatureViewSpec(
        name=name,
        entity_keys=("k",),
        event_timestamp="event_time",
        created_timestamp="created_time" if created else None,
        features=(FeatureSpec(name=f"{name}_id", type="int"), FeatureSpec(name=f"{name}_tag", type="string")),
        ttl_seconds=None if ttl_minutes is None else ttl_minutes * 60,
        source="s",
    )


def _at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


feature_row = st.tuples(
    st.sampled_from(["a", "b", "c"]),  # entity
    st.integers(0, 12),  # event minute
    st.integers(-2, 6),  # created - event, minutes (may precede the event: clocks disagree)
    st.integers(0, 2),  # ingestion batch
)
entity_row = st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(-1, 16))


def _view_rows(view: FeatureViewSpec, drawn: list[tuple[str, int, int, int]]) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for n, (k, event, delta, batch) in enumerate(drawn):
        ident = (k, event, delta if view.created_timestamp else 0, batch)
        if ident in seen:  # (keys, event, created, ingested) is unique in the store: ingestion dedups
            continue
        seen.add(ident)
        row = {"k": k, "event_time": _at(event), "ingested_at": _at(100 + batch)}
        if view.created_timestamp:
            row["created_time"] = _at(event + delta)
        row |= {f"{view.name}_id": n, f"{view.name}_tag": f"{view.name}-{n}"}
        rows.append(row)
    return rows


def _reference(
    entities: list[dict[str, Any]],
    views: dict[str, tuple[FeatureViewSpec, list[dict[str, Any]]]],
    guard: bool,
) -> list[dict[str, Any]]:
    """The definition, row by row: latest visible within TTL, ties by created then ingestion time."""
    out = []
    for entity in entities:
        t, record = entity["ts"], {"k": entity["k"], "ts": entity["ts"]}
        for view, rows in views.values():
            ttl = view.ttl_seconds
            visible = [
                r
                for r in rows
                if r["k"] == entity["k"]
                and r["event_time"] <= t
                and (ttl is None or r["event_time"] >= t - timedelta(seconds=ttl))
                and not (guard and view.created_timestamp and r["created_time"] > t)
            ]
            best = max(
                visible,
                key=lambda r: (r["event_time"], r.get("created_time", T0), r["ingested_at"]),
                default=None,
            )
            for feature in view.feature_names:
                record[feature] = None if best is None else best[feature]
        out.append(record)
    return out


def _table(rows: list[dict[str, Any]], view: FeatureViewSpec) -> pa.Table:
    fields = [pa.field("k", pa.string()), pa.field("event_time", TS)]
    if view.created_timestamp:
        fields.append(pa.field("created_time", TS))
    fields += [pa.field(f"{view.name}_id", pa.int64()), pa.field(f"{view.name}_tag", pa.string())]
    fields.append(pa.field("ingested_at", TS))
    schema = pa.schema(fields)
    return pa.Table.from_pylist(rows, schema=schema)


def _run(entities: list[dict[str, Any]], views: dict[str, Any], guard: bool, engine: Engine) -> list[Any]:
    entity = pa.Table.from_pylist(
        [{"k": e["k"], "ts": e["ts"], sql.ROW_ID: i} for i, e in enumerate(entities)],
        schema=pa.schema([("k", pa.string()), ("ts", TS), (sql.ROW_ID, pa.int64())]),
    )
    sources = tuple(
        sql.ViewSource(spec, f"view_{name}", tuple((f, f) for f in spec.feature_names))
        for name, (spec, _) in views.items()
    )
    query = sql.PointInTimeQuery("entity_rows", ("k", "ts"), "ts", sources, leakage_guard=guard)
    tables = {f"view_{n}": _table(rows, spec) for n, (spec, rows) in views.items()}
    if engine.startswith(("search", "snapshot")):
        limit = 10_000 if engine.endswith("-ranked") else snapshots.KEY_LIMIT
        with mock.patch.object(search, "KEY_LIMIT", limit), mock.patch.object(snapshots, "KEY_LIMIT", limit):
            inputs: dict[str, pa.Table | Snapshot] = dict(tables)
            if engine.startswith("snapshot"):
                inputs = {
                    name: _snapshot(views[name.removeprefix("view_")][0], t) for name, t in tables.items()
                }
            found: list[Any] = SortedSearchEngine().run(query, {"entity_rows": entity, **inputs}).to_pylist()
        return found
    if engine == "duckdb-codes":  # what the facade does before DuckDB runs: integer key codes for keys
        entity, tables, encoded = _encode_keys(entity, tables, sources)
        query = replace(query, views=encoded)
    dialect: sql.Dialect = "athena" if engine == "athena" else "duckdb"
    rows: list[Any] = ENGINE.run(sql.build(query, dialect), {"entity_rows": entity, **tables}).to_pylist()
    return rows


def _snapshot(spec: FeatureViewSpec, rows: pa.Table) -> Snapshot:
    """The view's snapshot as the offline store keeps it: built, written as Arrow IPC and read back."""
    written = snapshots.to_bytes(snapshots.build(spec, rows, sources="test"))
    return Snapshot.from_table(ipc.open_file(pa.py_buffer(written)).read_all())


# 40 examples per engine: the three DuckDB runs cost what they did when they shared one test; the
# sorted-search runs add little.
@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    guarded_rows=st.lists(feature_row, max_size=25),
    plain_rows=st.lists(feature_row, max_size=25),
    entities=st.lists(entity_row, min_size=1, max_size=15),
    ttl_guarded=st.sampled_from([None, 1, 3]),
    ttl_plain=st.sampled_from([None, 2, 5]),
    guard=st.booleans(),
)
def test_every_engine_matches_the_brute_force_reference(
    engine: Engine,
    guarded_rows: list[Any],
    plain_rows: list[Any],
    entities: list[tuple[str, int]],
    ttl_guarded: int | None,
    ttl_plain: int | None,
    guard: bool,
) -> None:
    # GIVEN a view with a created timestamp, one without, and entity rows (duplicates allowed) around them
    guarded = _view("g", created=True, ttl_minutes=ttl_guarded)
    plain = _view("p", created=False, ttl_minutes=ttl_plain)
    views = {"g": (guarded, _view_rows(guarded, guarded_rows)), "p": (plain, _view_rows(plain, plain_rows))}
    entity_rows = [{"k": k, "ts": _at(m)} for k, m in entities]
    expected = _reference(entity_rows, views, guard)
    # WHEN the engine joins them
    got = _run(entity_rows, views, guard, engine)
    # THEN it gives exactly the reference rows, in entity order
    assert got == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_ttl_edges_and_guard_on_a_hand_made_case(engine: Engine) -> None:
    # GIVEN one entity with values at minutes 0 (created at 1) and 5 (created at 9), TTL 5 minutes
    view = _view("g", created=True, ttl_minutes=5)
    rows = [
        {
            "k": "a",
            "event_time": _at(0),
            "created_time": _at(1),
            "ingested_at": _at(0),
            "g_id": 0,
            "g_tag": "x",
        },
        {
            "k": "a",
            "event_time": _at(5),
            "created_time": _at(9),
            "ingested_at": _at(0),
            "g_id": 1,
            "g_tag": "y",
        },
    ]
    entities = [{"k": "a", "ts": _at(m)} for m in (0, 1, 3, 5, 6, 9)]
    # WHEN joined point in time with the leakage guard
    got = [r["g_id"] for r in _run(entities, {"g": (view, rows)}, True, engine)]
    # THEN: not yet created at 0; visible 1..5 (the TTL edge is inclusive); expired at 6, because the
    # newer row stays hidden until it is created at 9
    assert got == [None, 0, 0, 0, None, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_entity_rows_without_values_keep_their_place(engine: Engine) -> None:
    # GIVEN entity rows for an unknown entity and before any value
    view = _view("p", created=False, ttl_minutes=None)
    rows = [{"k": "a", "event_time": _at(5), "ingested_at": _at(0), "p_id": 7, "p_tag": "t"}]
    entities = [{"k": "zz", "ts": _at(9)}, {"k": "a", "ts": _at(4)}, {"k": "a", "ts": _at(5)}]
    # WHEN joined
    got = _run(entities, {"p": (view, rows)}, True, engine)
    # THEN every row comes back in order, nulls where nothing was visible (Feast's file store drops them)
    assert [(r["k"], r["p_id"]) for r in got] == [("zz", None), ("a", None), ("a", 7)]


def test_athena_text_parses_as_trino() -> None:
    sqlglot = pytest.importorskip("sqlglot")
    # GIVEN the Athena text for a guarded and a plain view with partition pruning
    sources = tuple(
        sql.ViewSource(
            v, f'"db"."{v.name}"', tuple((f, f) for f in v.feature_names), ("2026-01-01", "2026-01-31")
        )
        for v in (_view("g", created=True, ttl_minutes=3), _view("p", created=False, ttl_minutes=None))
    )
    text = sql.build(sql.PointInTimeQuery('"db"."entity"', ("k", "ts"), "ts", sources), "athena")
    # WHEN parsed by sqlglot's Trino and Athena dialects
    for dialect in ("trino", "athena"):
        parsed = sqlglot.parse_one(text, read=dialect)
        # THEN it is one SELECT with no construct Athena lacks
        assert parsed.key == "select"
        assert "ASOF" not in text.upper() and "QUALIFY" not in text.upper()
    # AND the ASOF formulation is refused for Athena
    with pytest.raises(ValueError, match="ASOF"):
        sql.build(sql.PointInTimeQuery("e", ("k", "ts"), "ts", sources), "athena", "asof")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("guard", [True, False])
def test_sorted_search_matches_duckdb_on_two_keys_and_odd_entity_rows(seed: int, guard: bool) -> None:
    # GIVEN a view keyed by (k, j) of two types, with equal event times across and within keys
    rng = random.Random(seed)
    spec = FeatureViewSpec(
        name="m",
        entity_keys=("k", "j"),
        event_timestamp="event_time",
        created_timestamp="created_time",
        features=(FeatureSpec(name="m_id", type="int"),),
        ttl_seconds=4 * 60,
        source="s",
    )
    ident = {(rng.choice("ab"), rng.randrange(3), rng.randrange(12), rng.randrange(-2, 5)) for _ in range(60)}
    rows = [
        {"k": k, "j": j, "event_time": _at(m), "created_time": _at(m + d), "m_id": n, "ingested_at": _at(99)}
        for n, (k, j, m, d) in enumerate(sorted(ident))
    ]
    view = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("k", pa.string()),
                ("j", pa.int64()),
                ("event_time", TS),
                ("created_time", TS),
                ("m_id", pa.int64()),
                ("ingested_at", TS),
            ]
        ),
    )
    # AND entity rows with unknown key pairs, null keys and duplicates, in no particular order
    entity_rows = [
        {
            "k": rng.choice(["a", "b", "z", None]),
            "j": rng.choice([0, 1, 2, 7, None]),
            "ts": _at(rng.randrange(-1, 16)),
        }
        for _ in range(80)
    ]
    entity = pa.Table.from_pylist(
        [{**e, sql.ROW_ID: i} for i, e in enumerate(entity_rows)],
        schema=pa.schema([("k", pa.string()), ("j", pa.int64()), ("ts", TS), (sql.ROW_ID, pa.int64())]),
    )
    source = sql.ViewSource(spec, "view_m", (("m_id", "m_id"),))
    query = sql.PointInTimeQuery("entity_rows", ("k", "j", "ts"), "ts", (source,), leakage_guard=guard)
    inputs = {"entity_rows": entity, "view_m": view}
    # WHEN the sorted-search engine (over the rows, over their snapshot) and DuckDB (both SQL formulations)
    # join them
    got = SortedSearchEngine().run(query, inputs).to_pylist()
    from_snapshot = SortedSearchEngine().run(query, inputs | {"view_m": _snapshot(spec, view)}).to_pylist()
    asof = ENGINE.run(sql.build(query, "duckdb"), inputs).to_pylist()
    window = ENGINE.run(sql.build(query, "athena"), inputs).to_pylist()
    # THEN all agree row for row (also over the view's snapshot), and some rows found a value
    assert got == from_snapshot == asof == window
    assert any(r["m_id"] is not None for r in got)


def test_sorted_search_handles_empty_inputs() -> None:
    # GIVEN a view with no rows, and one whose rows match no entity row
    view = _view("p", created=False, ttl_minutes=None)
    entities = [{"k": "a", "ts": _at(3)}]
    empty = _run(entities, {"p": (view, [])}, True, "search")
    other = [{"k": "b", "event_time": _at(0), "ingested_at": _at(0), "p_id": 1, "p_tag": "t"}]
    unmatched = _run(entities, {"p": (view, other)}, True, "search")
    # WHEN / THEN the entity row comes back with nulls, and no entity rows give no rows
    assert empty == unmatched == [{"k": "a", "ts": _at(3), "p_id": None, "p_tag": None}]
    assert _run([], {"p": (view, other)}, True, "search") == []


@pytest.mark.parametrize(
    "values",
    [
        pa.array([1.5, None, 3.0, 4.0, None, 6.0, 7.0, 8.0, 9.0]),
        pa.array(["a", "bb", None, "", "e", None, "g", "h", "i"]),
        pa.array([True, False, None, True, True, False, None, False, True]),
        pa.array([1, 2, 3, 4, 5, 6, 7, 8, 9], TS),
        pa.array(["q", "x", None, "z", "w", "v", "u", "t", "s", "r"]).slice(1, 9),  # an offset
    ],
)
def test_misses_become_nulls_through_the_bitmap(values: pa.Array) -> None:
    # GIVEN gathered values and which entity rows had a hit (9 rows: the bitmap spans two bytes)
    valid = [True, True, False, True, False, True, True, False, True]
    # WHEN the misses are masked
    got = search._masked(values, np.array(valid))
    # THEN they are null, the values' own nulls stay null, the rest keep their values
    assert got.equals(pc.if_else(pa.array(valid), values, pa.scalar(None, values.type)))
    assert got.slice(2, 5).to_pylist() == [
        None,
        values[3].as_py(),
        None,
        values[5].as_py(),
        values[6].as_py(),
    ]
