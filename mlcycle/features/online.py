"""The online store: the latest value per entity and view, in one DynamoDB table.

Item: ``pk`` = the entity (``customer_id=c1``; several keys joined with ``|`` in key order), ``sk`` = the
view, ``event_ts`` and ``created_ts`` (epoch microseconds; 0 when the view declares no created time),
``ingested_at`` and ``features`` (a map). One entity's views share a partition, so all its features come
back from one partition.

Newer wins: an item is written only when the store holds nothing for its entity and view, or an older
``(event_ts, created_ts)`` (equal: a later write of the same instant wins, as the later ingestion does
offline). The stored instants are read in batches of 100, the newer items written in batches of 25, so a
late, older record never overwrites a newer one whatever the order of writes. Writers are serialized (the
ingest function runs with a reserved concurrency of 1), which is what makes read-then-write safe; it
costs a few hundred round trips for thousands of entities where conditional puts or transactions cost one
per item (and DynamoDB transactions are slow on the embedded AWS, where moto copies the table for each).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.config import FeatureViewSpec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100

EntityId = str | Mapping[str, Any]


def entity_key(keys: Sequence[str], values: Sequence[Any]) -> str:
    """The partition key of an entity: ``k=v`` pairs in the view's key order, joined with ``|``."""
    return "|".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))


def micros(value: datetime) -> int:
    stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1_000_000)


@dataclass(frozen=True)
class OnlineWrite:
    view: str
    offered: int
    written: int
    #: Items not written because the store already held a newer (or the same) record.
    stale: int


class OnlineStore:
    """Conditional writes and batch reads of one DynamoDB table (client injected)."""

    def __init__(
        self, dynamodb: DynamoDBClient, table: str, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.dynamodb, self.table, self._sleep = dynamodb, table, sleep

    # --- writes --------------------------------------------------------------------------------------------

    def write(self, spec: FeatureViewSpec, rows: pa.Table, ingested_at: datetime) -> OnlineWrite:
        """The newest row per entity of ``rows`` (already typed by the offline store) -> the table."""
        latest = latest_per_entity(rows, spec)
        items = [self._item(spec, row, ingested_at) for row in latest.to_pylist()]
        stored = dict(self._batch_get([(i["pk"]["S"], spec.name) for i in items], projection=True))
        newer = [i for i in items if _instant(i) >= _stored_instant(stored.get((i["pk"]["S"], spec.name)))]
        for start in range(0, len(newer), BATCH_WRITE_LIMIT):
            self._batch_write(newer[start : start + BATCH_WRITE_LIMIT])
        return OnlineWrite(spec.name, len(items), len(newer), len(items) - len(newer))

    def _item(self, spec: FeatureViewSpec, row: dict[str, Any], ingested_at: datetime) -> dict[str, Any]:
        created = row.get(spec.created_timestamp) if spec.created_timestamp else None
        return {
            "pk": {"S": entity_key(spec.entity_keys, [row[k] for k in spec.entity_keys])},
            "sk": {"S": spec.name},
            "event_ts": {"N": str(micros(row[spec.event_timestamp]))},
            "created_ts": {"N": str(micros(created) if created else 0)},
            "ingested_at": {"S": ingested_at.isoformat()},
            "features": {"M": {f.name: _to_attr(row[f.name]) for f in spec.features}},
        }

    def _batch_write(self, items: list[dict[str, Any]]) -> None:
        request: dict[str, Any] = {self.table: [{"PutRequest": {"Item": item}} for item in items]}
        rounds = 0
        while request:
            rounds += 1
            request = self.dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if request:
                self._sleep(min(0.05 * 2**rounds, 2.0))  # throttled: back off before the rest

    # --- reads ---------------------------------------------------------------------------------------------

    def read(
        self,
        views: Sequence[FeatureViewSpec],
        entities: Sequence[EntityId],
        *,
        full_feature_names: bool = False,
    ) -> pd.DataFrame:
        """One row per requested entity (in order), the views' features as columns; nulls where absent."""
        pks = [_pk_of(entity, views[0].entity_keys) for entity in entities]
        wanted = [(pk, view.name) for pk in dict.fromkeys(pks) for view in views]
        found = dict(self._batch_get(wanted))
        records = []
        for entity, pk in zip(entities, pks, strict=True):
            record: dict[str, Any] = dict(_entity_values(entity, views[0].entity_keys))
            for view in views:
                item = found.get((pk, view.name))
                values = item["features"] if item else {}
                for feature in view.feature_names:
                    name = f"{view.name}__{feature}" if full_feature_names else feature
                    record[name] = values.get(feature)
                record[f"{view.name}__event_timestamp"] = _from_micros(item["event_ts"]) if item else None
            records.append(record)
        return pd.DataFrame.from_records(records)

    def _batch_get(
        self, keys: list[tuple[str, str]], *, projection: bool = False
    ) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
        """Stored items by (pk, sk); ``projection`` reads only the keys and instants (for writes)."""
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            chunk = keys[start : start + BATCH_GET_LIMIT]
            spec: dict[str, Any] = {"Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in chunk]}
            if projection:
                spec["ProjectionExpression"] = "pk, sk, event_ts, created_ts"
            request: dict[str, Any] = {self.table: spec}
            rounds = 0
            while request:
                rounds += 1
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.table, []):
                    plain = {k: _from_attr(v) for k, v in item.items()}
                    yield (plain["pk"], plain["sk"]), plain
                request = answer.get("UnprocessedKeys") or {}
                if request:
                    self._sleep(min(0.05 * 2**rounds, 2.0))  # throttled: back off before the rest


def _instant(item: Mapping[str, Any]) -> tuple[int, int]:
    return int(item["event_ts"]["N"]), int(item["created_ts"]["N"])


def _stored_instant(plain: Mapping[str, Any] | None) -> tuple[int, int]:
    """The stored item's instant; before any instant when nothing is stored."""
    if plain is None:
        return (-(2**63), -(2**63))
    return int(plain["event_ts"]), int(plain["created_ts"])


def latest_per_entity(rows: pa.Table, spec: FeatureViewSpec) -> pa.Table:
    """The greatest row per entity in (event time, created time, position): the one the store should hold."""
    order = [spec.event_timestamp, *([spec.created_timestamp] if spec.created_timestamp else [])]
    numbered = rows.append_column("__i", pa.array(range(rows.num_rows), pa.int64()))
    sort_keys = [(k, "ascending") for k in [*spec.entity_keys, *order, "__i"]]
    ordered = numbered.take(pc.sort_indices(numbered, sort_keys=sort_keys))
    n = ordered.num_rows
    if n == 0:
        return ordered.drop_columns(["__i"])
    # A row is its entity's last when the next row belongs to another entity (keys are never null here).
    boundary = pa.array([False] * (n - 1), pa.bool_())
    for key in spec.entity_keys:
        column = ordered[key].combine_chunks()
        boundary = pc.or_(boundary, pc.not_equal(column.slice(0, n - 1), column.slice(1)))
    last = pa.concat_arrays([boundary, pa.array([True])])
    return ordered.filter(last).drop_columns(["__i"])


def _pk_of(entity: EntityId, keys: Sequence[str]) -> str:
    if isinstance(entity, Mapping):
        return entity_key(keys, [entity[k] for k in keys])
    if len(keys) != 1:
        raise ValueError(f"entities of views keyed by {list(keys)} must be given as mappings")
    return entity_key(keys, [entity])


def _entity_values(entity: EntityId, keys: Sequence[str]) -> dict[str, Any]:
    return {k: entity[k] for k in keys} if isinstance(entity, Mapping) else {keys[0]: entity}


def _to_attr(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(Decimal(str(value)))}
    if isinstance(value, datetime):
        return {"S": value.isoformat()}
    return {"S": str(value)}


def _from_attr(attr: Mapping[str, Any]) -> Any:
    ((kind, value),) = attr.items()
    if kind == "NULL":
        return None
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() and "." not in value else float(number)
    if kind == "M":
        return {k: _from_attr(v) for k, v in value.items()}
    return value


def _from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)
