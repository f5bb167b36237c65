"""One SQL builder for point-in-time joins, in two dialects: DuckDB (embedded default) and Athena (Trino).

The rule every variant implements, per entity row ``e`` (keys, event time ``t``) and feature view ``v``:
the visible rows of ``v`` for ``e`` are those with the same keys, ``event_ts <= t``, ``event_ts >=
t - ttl`` (both ends inclusive, as Feast does), and, with the leakage guard on and a created-timestamp
column declared, ``created_ts <= t``. The chosen row is the greatest visible one in the total order
``(event_ts, created_ts, ingested_at)``; with none, the features are null and the entity row stays.

Two formulations give the same rows:

* ``window`` (Athena; DuckDB runs it too): number each view row in that total order per entity, union it
  with the entity rows on one time axis (a view row at the time it becomes visible sorts before an entity
  row at the same instant), and carry the running ``max`` of the row number forward to each entity row.
  The winner is then joined back by ``(keys, number)`` and kept only within the TTL (the greatest
  visible row is the newest, so an expired winner means no row is in TTL). No range join: each view is
  sorted once, whatever the number of rows per entity.
* ``asof`` (DuckDB): an ``ASOF LEFT JOIN`` on the time a row becomes visible. Without the guard that
  time is the event time and a dedup of equal event times makes the pick deterministic. With it, the
  visible-time axis and the ordering axis differ, so each view row first carries the running best row
  number over its visible time (a window), and the ASOF join lands on that running best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mlcycle.config import FeatureViewSpec

Dialect = Literal["duckdb", "athena"]
Formulation = Literal["asof", "window"]

#: Columns every offline row carries besides keys, event time and features.
INGESTED_AT = "ingested_at"
#: The Hive partition column of the offline store (and of the Glue tables).
PARTITION_COLUMN = "event_date"
#: The row number the engines add to entity rows, so the result keeps their order and duplicates.
ROW_ID = "__row"
#: An integer code the DuckDB engine may put in place of a view's single key (``__key`` on the view's rows,
#: ``__key{i}`` on the entity rows for view ``i``): joins and sorts on integers instead of strings.
KEY_CODE = "__key"


def quote(identifier: str) -> str:
    """A double-quoted identifier (both dialects), embedded quotes doubled."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class ViewSource:
    """One view as the query reads it: its spec, the table holding its offline rows, output names."""

    spec: FeatureViewSpec
    table: str
    #: Output column name per feature (plain, or ``view__feature`` for full names).
    outputs: tuple[tuple[str, str], ...]
    #: ``(first, last)`` event dates (YYYY-MM-DD) to read: prunes partitions; None reads all.
    partitions: tuple[str, str] | None = None
    #: The rows carry integer key codes (see ``KEY_CODE``) to join on instead of the keys themselves.
    encoded: bool = False

    @property
    def guarded(self) -> bool:
        return self.spec.created_timestamp is not None


@dataclass(frozen=True)
class PointInTimeQuery:
    """The inputs of one point-in-time join."""

    entity_table: str
    entity_columns: tuple[str, ...]
    timestamp_column: str
    views: tuple[ViewSource, ...]
    leakage_guard: bool = True


def build(query: PointInTimeQuery, dialect: Dialect, formulation: Formulation | None = None) -> str:
    """The SQL text; ``formulation`` defaults to ``asof`` on DuckDB and ``window`` on Athena."""
    chosen = formulation or ("asof" if dialect == "duckdb" else "window")
    if chosen == "asof" and dialect != "duckdb":
        raise ValueError("Athena (Trino) has no ASOF JOIN: use the window formulation")
    ctes = [f"__entity AS (SELECT * FROM {query.entity_table})"]
    if chosen == "asof":
        ctes.extend(_asof_ctes(query))
    else:
        for i, view in enumerate(query.views):
            ctes.append(_rows_cte(i, view, query.leakage_guard))
            ctes.extend(_window_ctes(i, view, query.timestamp_column))
    return "WITH " + ",\n".join(ctes) + "\n" + _final_select(query)


def _view_keys(view: ViewSource) -> list[str]:
    """Key expressions on the view's table: the declared keys, or the engine's integer code."""
    return [quote(KEY_CODE)] if view.encoded else [quote(k) for k in view.spec.entity_keys]


def _entity_keys(i: int, view: ViewSource) -> list[str]:
    """Key expressions on the entity rows for view ``i`` (its code column when encoded)."""
    return [quote(f"{KEY_CODE}{i}")] if view.encoded else [quote(k) for k in view.spec.entity_keys]


def _aliased(expressions: list[str]) -> str:
    """``expr AS __k0, ...``: inside the query every key is named positionally, whatever its origin."""
    return ", ".join(f"{e} AS __k{j}" for j, e in enumerate(expressions))


def _internal_keys(view: ViewSource, alias: str = "") -> list[str]:
    prefix = f"{alias}." if alias else ""
    return [f"{prefix}__k{j}" for j in range(len(_view_keys(view)))]


def _equal(view: ViewSource, left: str, right: str) -> str:
    return " AND ".join(
        f"{a} = {b}" for a, b in zip(_internal_keys(view, left), _internal_keys(view, right), strict=True)
    )


def _ttl_predicate(view: ViewSource, event_ts: str, entity_ts: str) -> str:
    ttl = view.spec.ttl_seconds
    return "TRUE" if ttl is None else f"{event_ts} >= {entity_ts} - INTERVAL '{ttl}' SECOND"


def _where(view: ViewSource) -> str:
    if view.partitions is None:
        return ""
    first, last = view.partitions
    return f" WHERE {quote(PARTITION_COLUMN)} BETWEEN {literal(first)} AND {literal(last)}"


def _order(view: ViewSource, descending: bool = False) -> list[str]:
    spec, suffix = view.spec, " DESC" if descending else ""
    columns = [spec.event_timestamp, spec.created_timestamp, INGESTED_AT]
    return [quote(c) + suffix for c in columns if c]


def _rows_cte(i: int, view: ViewSource, leakage_guard: bool) -> str:
    """The view's rows with ``__event_ts``, ``__vis`` (visible from) and ``__ord`` (order per entity)."""
    spec = view.spec
    event = quote(spec.event_timestamp)
    created = quote(spec.created_timestamp) if spec.created_timestamp else None
    vis = f"greatest({event}, {created})" if created and leakage_guard else event
    features = ", ".join(quote(f) for f in spec.feature_names)
    keys = ", ".join(_view_keys(view))
    return (
        f"__v{i}_rows AS (SELECT {_aliased(_view_keys(view))}, {event} AS __event_ts, {vis} AS __vis, "
        f"{features}, row_number() OVER (PARTITION BY {keys} ORDER BY {', '.join(_order(view))}) AS __ord "
        f"FROM {view.table}{_where(view)})"
    )


def _window_ctes(i: int, view: ViewSource, timestamp_column: str) -> list[str]:
    keys = ", ".join(_internal_keys(view))
    union = (
        f"SELECT {keys}, __vis AS __t, 0 AS __kind, __ord, CAST(NULL AS BIGINT) AS {ROW_ID} "
        f"FROM __v{i}_rows UNION ALL "
        f"SELECT {_aliased(_entity_keys(i, view))}, {quote(timestamp_column)} AS __t, 1 AS __kind, "
        f"CAST(NULL AS BIGINT) AS __ord, {ROW_ID} FROM __entity"
    )
    running = (
        f"SELECT {keys}, __t, __kind, {ROW_ID}, max(__ord) OVER (PARTITION BY {keys} ORDER BY __t, __kind "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __best FROM ({union}) __u"
    )
    outputs = ", ".join(f"r.{quote(f)} AS {quote(out)}" for f, out in view.outputs)
    joined = (
        f"SELECT b.{ROW_ID}, {outputs} FROM (SELECT * FROM ({running}) __w WHERE __kind = 1) b "
        f"JOIN __v{i}_rows r ON {_equal(view, 'r', 'b')} AND r.__ord = b.__best "
        f"WHERE {_ttl_predicate(view, 'r.__event_ts', 'b.__t')}"
    )
    return [f"__v{i} AS ({joined})"]


def _guarded(view: ViewSource, leakage_guard: bool) -> bool:
    return view.guarded and leakage_guard


def _asof_ctes(query: PointInTimeQuery) -> list[str]:
    """One chain of ASOF joins that lands each entity row on its winning instant per view, then the
    winners' features fetched by an equi-join on that instant (ties there broken by created, ingested)."""
    ctes, selects, joins = [], ["e.*"], []
    entity_ts = f"e.{quote(query.timestamp_column)}"
    for i, view in enumerate(query.views):
        if _guarded(view, query.leakage_guard):
            # Visible time differs from the ordering: each row carries the running best row number.
            ctes.append(_rows_cte(i, view, query.leakage_guard))
            keys = ", ".join(_internal_keys(view))
            ctes.append(
                f"__v{i}_run AS (SELECT DISTINCT {keys}, __vis, max(__ord) OVER (PARTITION BY {keys} "
                f"ORDER BY __vis RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __best "
                f"FROM __v{i}_rows)"
            )
            right, carried = f"__v{i}_run", "__best"
        else:
            # Visible from its event time: land on the latest instant, fetch its row(s) afterwards. Only
            # keys and times go through the ASOF sort; a per-instant dedup of all rows would cost more.
            event = quote(view.spec.event_timestamp)
            right = f"(SELECT {_aliased(_view_keys(view))}, {event} AS __vis FROM {view.table}{_where(view)})"
            carried = "__vis"
        selects.append(f"v{i}.{carried} AS __w{i}")
        on = " AND ".join(
            f"e.{k} = {a}" for k, a in zip(_entity_keys(i, view), _internal_keys(view, f"v{i}"), strict=True)
        )
        joins.append(f"ASOF LEFT JOIN {right} v{i} ON {on} AND {entity_ts} >= v{i}.__vis")
    ctes.append(f"__asof AS (SELECT {', '.join(selects)} FROM __entity e {' '.join(joins)})")
    a_ts = f"a.{quote(query.timestamp_column)}"
    for i, view in enumerate(query.views):
        outputs = ", ".join(f"r.{quote(f)} AS {quote(out)}" for f, out in view.outputs)
        on = " AND ".join(
            f"r.{v} = a.{k}" for v, k in zip(_view_keys(view), _entity_keys(i, view), strict=True)
        )
        if _guarded(view, query.leakage_guard):
            on = " AND ".join(
                f"r.{v} = a.{k}" for v, k in zip(_internal_keys(view), _entity_keys(i, view), strict=True)
            )
            ctes.append(
                f"__v{i} AS (SELECT a.{ROW_ID}, {outputs} FROM __asof a JOIN __v{i}_rows r ON {on} "
                f"AND r.__ord = a.__w{i} WHERE {_ttl_predicate(view, 'r.__event_ts', a_ts)})"
            )
            continue
        event = f"r.{quote(view.spec.event_timestamp)}"
        ties = ", ".join(f"r.{c}" for c in _order(view, descending=True)[1:])
        ctes.append(
            f"__v{i} AS (SELECT a.{ROW_ID}, {outputs} FROM __asof a JOIN {view.table} r ON {on} "
            f"AND {event} = a.__w{i} WHERE {_ttl_predicate(view, 'a.__w' + str(i), a_ts)} "
            f"QUALIFY row_number() OVER (PARTITION BY a.{ROW_ID} ORDER BY {ties}) = 1)"
        )
    return ctes


def _final_select(query: PointInTimeQuery) -> str:
    columns = [f"e.{quote(c)}" for c in query.entity_columns]
    joins = []
    for i, view in enumerate(query.views):
        columns += [f"v{i}.{quote(out)}" for _, out in view.outputs]
        joins.append(f"LEFT JOIN __v{i} v{i} ON v{i}.{ROW_ID} = e.{ROW_ID}")
    return f"SELECT {', '.join(columns)} FROM __entity e " + " ".join(joins) + f" ORDER BY e.{ROW_ID}"


def entity_columns(names: Sequence[str]) -> tuple[str, ...]:
    """The entity columns the result keeps: all given ones, without the engine's row id and key codes."""
    return tuple(n for n in names if n != ROW_ID and not n.startswith(KEY_CODE))
