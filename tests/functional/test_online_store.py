"""The online store on moto's DynamoDB: newer wins whatever the order of writes; batch reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.config import FeatureSpec, FeatureViewSpec
from mlcycle.features.online import OnlineStore
from tests.utils import REGION, make_key_table

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
VIEW = FeatureViewSpec(
    name="activity",
    entity_keys=("customer_id",),
    event_timestamp="event_time",
    created_timestamp="created_time",
    features=(FeatureSpec(name="calls", type="int"), FeatureSpec(name="plan", type="string")),
    source="churn",
)
SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("event_time", TS),
        ("created_time", TS),
        ("calls", pa.int64()),
        ("plan", pa.string()),
    ]
)


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    """One moto DynamoDB for the module (hypothesis examples reuse it with fresh tables)."""
    from moto import mock_aws

    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        yield boto3.client("dynamodb", region_name=REGION)


def _table(dynamodb: Any, name: str) -> OnlineStore:
    make_key_table(dynamodb, name)
    return OnlineStore(dynamodb, name, sleep=lambda _s: None)


def _rows(records: list[tuple[str, int, int, int]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "customer_id": c,
                "event_time": T0 + timedelta(hours=e),
                "created_time": T0 + timedelta(hours=e + d),
                "calls": n,
                "plan": f"p{n}",
            }
            for n, (c, e, d, _) in enumerate(records)
        ],
        schema=SCHEMA,
    )


record = st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 4), st.integers(0, 2), st.integers(0, 3))
_counter = iter(range(10**6))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(record, min_size=1, max_size=12, unique_by=lambda r: (r[0], r[1], r[2])), data=st.data()
)
def test_newer_wins_whatever_the_order_of_writes(
    dynamodb: Any, records: list[Any], data: st.DataObject
) -> None:
    # GIVEN records of a few entities, written one batch at a time in a random order
    store = _table(dynamodb, f"online-{next(_counter)}")
    order = data.draw(st.permutations(range(len(records))))
    table = _rows(records)
    for i in order:
        store.write(VIEW, table.slice(i, 1), ingested_at=T0)
    # WHEN the entities are read
    got = store.read([VIEW], ["a", "b", "c"]).set_index("customer_id")
    # THEN each holds its greatest record by (event time, created time), as if written in order
    for entity in ("a", "b", "c"):
        mine = [(e, d, n) for n, (c, e, d, _) in enumerate(records) if c == entity]
        expected = max(mine)[2] if mine else None
        value = got.loc[entity, "calls"]
        assert (None if value is None or value != value else int(value)) == expected


def test_a_late_older_record_is_reported_stale_and_changes_nothing(dynamodb: Any) -> None:
    # GIVEN an entity whose newest record is stored
    store = _table(dynamodb, "online-late")
    newest = _rows([("a", 5, 0, 0)])
    assert store.write(VIEW, newest, ingested_at=T0).written == 1
    # WHEN an older record arrives late, in a batch with a new entity
    result = store.write(VIEW, _rows([("a", 1, 0, 0), ("b", 1, 0, 0)]), ingested_at=T0)
    # THEN only the new entity is written and the older record is counted as stale
    assert (result.written, result.stale) == (1, 1)
    assert store.read([VIEW], ["a"]).loc[0, "calls"] == 0


def test_batch_get_reads_more_than_one_request_holds_in_request_order(dynamodb: Any) -> None:
    # GIVEN 230 entities (more than one transaction and one batch_get of 100)
    store = _table(dynamodb, "online-many")
    ids = [f"c{i:04d}" for i in range(230)]
    rows = pa.Table.from_pylist(
        [
            {"customer_id": c, "event_time": T0, "created_time": T0, "calls": i, "plan": "x"}
            for i, c in enumerate(ids)
        ],
        schema=SCHEMA,
    )
    assert store.write(VIEW, rows, ingested_at=T0).written == 230
    # WHEN read back in reverse, with an unknown id in the middle
    wanted = [*reversed(ids[:120]), "nobody", *ids[120:]]
    frame = store.read([VIEW], wanted, full_feature_names=True)
    # THEN one row per id, in request order; the unknown one has nulls
    assert list(frame["customer_id"]) == wanted
    assert pd.isna(frame.loc[120, "activity__calls"])
    assert int(frame.loc[0, "activity__calls"]) == 119
    assert frame["activity__event_timestamp"].notna().sum() == 230
