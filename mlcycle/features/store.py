"""``FeatureStore``: one facade over the offline store (S3 + Glue), the online store (DynamoDB) and the
engines that join them point in time (sorted search or DuckDB here, Athena in AWS). Clients are injected;
the CLI, the ingest Lambda, the tests and the benchmark all go through this class.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlcycle import aws
from mlcycle.config import DatasetContract, FeatureViewSpec, Settings
from mlcycle.data.catalog import GLUE_TYPES
from mlcycle.features import sql
from mlcycle.features.engines import AthenaEngine, DuckDBEngine
from mlcycle.features.offline import ARROW_TYPES, OfflineStore, S3Objects
from mlcycle.features.online import EntityId, OnlineStore
from mlcycle.features.search import SortedSearchEngine
from mlcycle.features.snapshots import Snapshot

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_glue.type_defs import ColumnTypeDef, TableInputTypeDef
    from mypy_boto3_s3 import S3Client

#: The entity rows' time column unless told otherwise (Feast's name).
DEFAULT_TIMESTAMP_COLUMN = "event_timestamp"
_ENTITY_TABLE = "__entity_rows"
#: The embedded engines by name: ``search`` (sorted arrays, the default) or ``duckdb`` (the SQL builder's
#: ASOF text run in DuckDB). Both implement the same rule and give the same rows.
EngineName = Literal["search", "duckdb"]
EmbeddedEngine = SortedSearchEngine | DuckDBEngine


class FeatureStoreError(ValueError):
    """A request the store cannot serve as asked (unknown view, missing column, name clash)."""


class FeatureStore:
    """Feature views of one deployment. Attributes: ``offline``, ``online`` (None: no online store)."""

    def __init__(
        self,
        views: Sequence[FeatureViewSpec],
        contracts: Mapping[str, DatasetContract],
        *,
        offline: OfflineStore,
        online: OnlineStore | None = None,
        engine: EmbeddedEngine | EngineName = "search",
    ) -> None:
        self._views = {v.name: v for v in views}
        self._contracts = dict(contracts)
        self.offline, self.online = offline, online
        self.engine: EmbeddedEngine = _embedded_engine(engine)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        features_bucket: str,
        online_table: str | None = None,
        glue_database: str | None = None,
        s3: S3Client | None = None,
        glue: GlueClient | None = None,
        dynamodb: DynamoDBClient | None = None,
        reader: Literal["arrow", "boto3"] = "arrow",
        engine: EmbeddedEngine | EngineName = "search",
    ) -> FeatureStore:
        """The deployment's store; default clients from :mod:`mlcycle.aws` for those not given."""
        s3 = s3 or aws.client("s3")
        catalog = (glue or aws.client("glue")) if glue_database else None
        offline = OfflineStore(
            S3Objects(s3, features_bucket, reader=reader), glue=catalog, database=glue_database
        )
        online = OnlineStore(dynamodb or aws.client("dynamodb"), online_table) if online_table else None
        contracts = {settings.problem.dataset.name: settings.problem.dataset}
        return cls(settings.feature_views, contracts, offline=offline, online=online, engine=engine)

    # --- views ---------------------------------------------------------------------------------------------

    @property
    def views(self) -> tuple[FeatureViewSpec, ...]:
        return tuple(self._views.values())

    def view(self, name: str) -> FeatureViewSpec:
        try:
            return self._views[name]
        except KeyError:
            raise FeatureStoreError(f"no feature view {name!r} (known: {sorted(self._views)})") from None

    def contract(self, view: FeatureViewSpec) -> DatasetContract:
        return self._contracts[view.source]

    def views_of(self, dataset: str) -> tuple[FeatureViewSpec, ...]:
        return tuple(v for v in self._views.values() if v.source == dataset)

    def _selected(self, names: Sequence[str] | None) -> list[FeatureViewSpec]:
        chosen = [self.view(n) for n in names] if names else list(self._views.values())
        if not chosen:
            raise FeatureStoreError("no feature views to read")
        return chosen

    # --- offline -------------------------------------------------------------------------------------------

    def get_historical_features(
        self,
        entity_rows: pd.DataFrame | pa.Table,
        views: Sequence[str] | None = None,
        *,
        timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
        leakage_guard: bool = True,
        full_feature_names: bool = False,
        event_time_suffix: str | None = None,
    ) -> pa.Table:
        """Each entity row (in order, duplicates kept) with the views' features as of its event time.

        Point-in-time correct: the latest value at or before the row's time, within the view's TTL, never
        a later one; with ``leakage_guard`` (default) rows created after that time are invisible too.
        Rows with no such value keep their place with nulls. The store's embedded engine runs the join
        (sorted search by default; ``engine="duckdb"`` runs the SQL builder's text in DuckDB instead).
        With ``event_time_suffix``, each view's chosen event time comes along as ``{view}{suffix}`` (null
        where the row got no value), for checks that no feature is newer than its row.
        """
        chosen = self._selected(views)
        entity = _entity_table(entity_rows, timestamp_column)
        query = self._query(
            entity,
            chosen=chosen,
            timestamp_column=timestamp_column,
            leakage_guard=leakage_guard,
            full_feature_names=full_feature_names,
            entity_table=_ENTITY_TABLE,
            event_time_suffix=event_time_suffix,
        )
        bounds = _time_bounds(entity, timestamp_column)
        # One thread per view: listing and reading are I/O (S3 round trips), and Arrow releases the GIL.
        with ThreadPoolExecutor(max(len(query.views), 1)) as pool:
            read = pool.map(
                lambda s: self.offline.for_join(s.spec, self.contract(s.spec), _dates(s.spec, bounds)),
                query.views,
            )
            inputs = {s.table: rows for s, rows in zip(query.views, read, strict=True)}
        if isinstance(self.engine, SortedSearchEngine):
            return self.engine.run(query, {_ENTITY_TABLE: entity, **inputs})
        tables = {name: s.rows if isinstance(s, Snapshot) else s for name, s in inputs.items()}
        entity = entity.append_column(sql.ROW_ID, pa.array(range(entity.num_rows), pa.int64()))
        entity, tables, sources = _encode_keys(entity, tables, query.views)
        query = replace(query, views=sources)
        return self.engine.run(sql.build(query, "duckdb"), {_ENTITY_TABLE: entity, **tables})

    def historical_sql(
        self,
        entity_table: str,
        entity_columns: Sequence[str],
        views: Sequence[str] | None = None,
        *,
        database: str,
        timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
        leakage_guard: bool = True,
        full_feature_names: bool = False,
        dates: tuple[str, str] | None = None,
    ) -> str:
        """The Athena text of the same join over the Glue tables (``entity_table`` must have ``__row``)."""
        chosen = self._selected(views)
        outputs = _outputs(chosen, entity_columns, full_feature_names)
        sources = tuple(
            sql.ViewSource(v, f"{sql.quote(database)}.{sql.quote(v.name)}", outputs[v.name], dates)
            for v in chosen
        )
        query = sql.PointInTimeQuery(
            entity_table, tuple(entity_columns), timestamp_column, sources, leakage_guard
        )
        return sql.build(query, "athena")

    def get_historical_features_athena(
        self,
        entity_rows: pd.DataFrame | pa.Table,
        engine: AthenaEngine,
        *,
        s3: S3Client,
        views: Sequence[str] | None = None,
        timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
        leakage_guard: bool = True,
        full_feature_names: bool = False,
    ) -> list[dict[str, str | None]]:
        """The same join run by Athena: the entity rows go to a temporary Glue table next to the views."""
        glue, objects = self.offline.glue, self.offline.objects
        if glue is None or not isinstance(objects, S3Objects):
            raise FeatureStoreError("Athena needs an offline store in S3 with a Glue catalog")
        entity = _entity_table(entity_rows, timestamp_column)
        entity = entity.append_column(sql.ROW_ID, pa.array(range(entity.num_rows), pa.int64()))
        name = f"entity_rows_{uuid.uuid4().hex[:12]}"
        prefix = f"_entity_rows/{name}/"
        buffer = io.BytesIO()
        pq.write_table(entity, buffer)
        s3.put_object(Bucket=objects.bucket, Key=prefix + "rows.parquet", Body=buffer.getvalue())
        glue.create_table(
            DatabaseName=engine.database, TableInput=_entity_table_input(name, entity, objects.uri(prefix))
        )
        try:
            text = self.historical_sql(
                f"{sql.quote(engine.database)}.{sql.quote(name)}",
                sql.entity_columns(entity.column_names),
                views,
                database=engine.database,
                timestamp_column=timestamp_column,
                leakage_guard=leakage_guard,
                full_feature_names=full_feature_names,
                dates=_athena_dates(self._selected(views), entity, timestamp_column),
            )
            return engine.run(text)
        finally:
            glue.delete_table(DatabaseName=engine.database, Name=name)

    def _query(
        self,
        entity: pa.Table,
        *,
        chosen: list[FeatureViewSpec],
        timestamp_column: str,
        leakage_guard: bool,
        full_feature_names: bool,
        entity_table: str,
        event_time_suffix: str | None = None,
    ) -> sql.PointInTimeQuery:
        for view in chosen:
            missing = [k for k in view.entity_keys if k not in entity.column_names]
            if missing:
                raise FeatureStoreError(f"entity rows lack the keys {missing} of feature view {view.name!r}")
        outputs = _outputs(chosen, entity.column_names, full_feature_names, event_time_suffix)
        sources = tuple(sql.ViewSource(v, f"__view_{i}", outputs[v.name]) for i, v in enumerate(chosen))
        return sql.PointInTimeQuery(
            entity_table, tuple(entity.column_names), timestamp_column, sources, leakage_guard
        )

    # --- online --------------------------------------------------------------------------------------------

    def get_online_features(
        self,
        entity_ids: Sequence[EntityId],
        views: Sequence[str] | None = None,
        *,
        full_feature_names: bool = False,
    ) -> pd.DataFrame:
        """The latest stored values per entity (one row per id, in order); nulls where none is stored."""
        if self.online is None:
            raise FeatureStoreError("this store has no online table")
        chosen = [v for v in self._selected(views) if v.online]
        if not chosen:
            raise FeatureStoreError("none of the selected views is online")
        keys = {v.entity_keys for v in chosen}
        if len(keys) != 1:
            raise FeatureStoreError(f"online views must share their entity keys; got {sorted(keys)}")
        return self.online.read(chosen, entity_ids, full_feature_names=full_feature_names)


def _embedded_engine(engine: EmbeddedEngine | EngineName) -> EmbeddedEngine:
    if engine == "search":
        return SortedSearchEngine()
    if engine == "duckdb":
        return DuckDBEngine()
    if isinstance(engine, SortedSearchEngine | DuckDBEngine):
        return engine
    raise FeatureStoreError(f"unknown engine {engine!r} (known: search, duckdb)")


def _entity_table(rows: pd.DataFrame | pa.Table, timestamp_column: str) -> pa.Table:
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)
    if timestamp_column not in table.column_names:
        raise FeatureStoreError(f"entity rows have no {timestamp_column!r} column (got {table.column_names})")
    if sql.ROW_ID in table.column_names:
        raise FeatureStoreError(f"{sql.ROW_ID!r} is reserved")
    stamps = table[timestamp_column]
    if pa.types.is_string(stamps.type) or pa.types.is_large_string(stamps.type):
        stamps = pc.cast(stamps, pa.timestamp("us"))
    if not pa.types.is_timestamp(stamps.type):
        raise FeatureStoreError(f"{timestamp_column!r} must hold timestamps, not {stamps.type}")
    if stamps.type.tz is None:
        stamps = pc.assume_timezone(stamps, "UTC")  # naive entity times are UTC, as stored times are
    if stamps.null_count:
        raise FeatureStoreError(f"{stamps.null_count} entity rows have no {timestamp_column!r}")
    index = table.column_names.index(timestamp_column)
    return table.set_column(index, timestamp_column, stamps.cast(ARROW_TYPES["timestamp"]))


def _encode_keys(
    entity: pa.Table, tables: dict[str, pa.Table], sources: tuple[sql.ViewSource, ...]
) -> tuple[pa.Table, dict[str, pa.Table], tuple[sql.ViewSource, ...]]:
    """Replace each single-key view's join key by an integer code shared with the entity rows.

    DuckDB sorts and joins integers about twice as fast as strings; one dictionary over the entity keys
    and the view's keys makes equal values equal codes, so the join is unchanged.
    """
    encoded = []
    for i, source in enumerate(sources):
        (key,) = source.spec.entity_keys if len(source.spec.entity_keys) == 1 else (None,)
        view = tables[source.table]
        if key is None or entity[key].type != view[key].type:
            encoded.append(source)
            continue
        both = pa.concat_arrays([entity[key].combine_chunks(), view[key].combine_chunks()])
        indices = pc.dictionary_encode(both).indices.cast(pa.int32())
        entity = entity.append_column(f"{sql.KEY_CODE}{i}", indices.slice(0, entity.num_rows))
        tables[source.table] = view.append_column(sql.KEY_CODE, indices.slice(entity.num_rows))
        encoded.append(replace(source, encoded=True))
    return entity, tables, tuple(encoded)


def _outputs(
    chosen: list[FeatureViewSpec],
    entity_columns: Sequence[str],
    full: bool,
    event_time_suffix: str | None = None,
) -> dict[str, tuple[tuple[str, str], ...]]:
    taken, outputs = set(entity_columns), {}
    for view in chosen:
        names = tuple((f, f"{view.name}__{f}" if full else f) for f in view.feature_names)
        if event_time_suffix is not None:
            names += ((view.event_timestamp, f"{view.name}{event_time_suffix}"),)
        clashes = [out for _, out in names if out in taken]
        if clashes:
            raise FeatureStoreError(
                f"feature columns {clashes} of view {view.name!r} clash with entity columns or other views; "
                "use full_feature_names or rename"
            )
        taken.update(out for _, out in names)
        outputs[view.name] = names
    return outputs


def _time_bounds(entity: pa.Table, column: str) -> tuple[datetime, datetime] | None:
    if entity.num_rows == 0:
        return None
    low, high = pc.min_max(entity[column]).values()
    return low.as_py(), high.as_py()


def _dates(view: FeatureViewSpec, bounds: tuple[datetime, datetime] | None) -> tuple[str, str] | None:
    """Event-date partitions that can hold a visible row: from the first time less the TTL to the last."""
    if bounds is None:
        return ("9999-12-31", "0000-01-01")  # no entity rows: read nothing
    if view.ttl_seconds is None:
        return ("0000-01-01", f"{bounds[1]:%Y-%m-%d}")
    first = bounds[0] - timedelta(seconds=view.ttl_seconds)
    return (f"{first:%Y-%m-%d}", f"{bounds[1]:%Y-%m-%d}")


def _athena_dates(chosen: list[FeatureViewSpec], entity: pa.Table, column: str) -> tuple[str, str] | None:
    bounds = _time_bounds(entity, column)
    ranges = [_dates(v, bounds) for v in chosen]
    valid = [r for r in ranges if r is not None]
    return (min(r[0] for r in valid), max(r[1] for r in valid)) if valid else None


def _entity_table_input(name: str, entity: pa.Table, location: str) -> TableInputTypeDef:
    columns: list[ColumnTypeDef] = [{"Name": f.name, "Type": _glue_type(f.type)} for f in entity.schema]
    return {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
        "StorageDescriptor": {
            "Columns": columns,
            "Location": location,
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "SerdeInfo": {
                "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
            },
        },
    }


def _glue_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return GLUE_TYPES["timestamp"]
    if pa.types.is_integer(kind):
        return GLUE_TYPES["int"]
    if pa.types.is_floating(kind):
        return GLUE_TYPES["float"]
    if pa.types.is_boolean(kind):
        return GLUE_TYPES["bool"]
    return GLUE_TYPES["string"]


def utc_now() -> datetime:
    return datetime.now(UTC)
