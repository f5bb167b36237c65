"""The prepare-data handler with moto: a duplicated S3 event writes nothing twice (Powertools idempotency)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pandas as pd
import pytest

from mlcycle import aws
from mlcycle.example.churn import generate
from mlcycle.local.awslambda.invocations import LambdaContext
from tests.utils import REGION, make_bucket


@pytest.fixture
def platform(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Buckets, the idempotency table and a bus whose events land in a queue, as the handler's env names."""
    aws.client.cache_clear()  # clients cached by an earlier test point at another moto
    make_bucket(s3, "landing")
    make_bucket(s3, "curated")
    db = boto3.client("dynamodb", region_name=REGION)
    db.create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", region_name=REGION)
    events.create_event_bus(Name="bus")
    events.put_rule(Name="all", EventBusName="bus", EventPattern=json.dumps({"source": ["mlcycle"]}))
    events.put_targets(Rule="all", EventBusName="bus", Targets=[{"Id": "q", "Arn": arn}])
    for name, value in {
        "MLCYCLE_CURATED_BUCKET": "curated",
        "MLCYCLE_EVENT_BUS": "bus",
        "MLCYCLE_IDEMPOTENCY_TABLE": "idempotency",
    }.items():
        monkeypatch.setenv(name, value)
    yield {"s3": s3, "sqs": sqs, "queue": queue}
    aws.client.cache_clear()


def _context() -> LambdaContext:
    return LambdaContext(
        function_name="prepare-data",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:prepare-data",
        memory_limit_in_mb=1024,
        aws_request_id="req-1",
        log_group_name="/aws/lambda/prepare-data",
        log_stream_name="stream",
        deadline=time.monotonic() + 300,
    )


def _s3_event(s3: Any, key: str, body: bytes) -> dict[str, Any]:
    put = s3.put_object(Bucket="landing", Key=key, Body=body)
    obj = {"key": key, "size": len(body), "versionId": put["VersionId"], "sequencer": "0065A1B2C3D4E5F6"}
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "landing"}, "object": obj},
    }
    return {"Records": [record]}


def _versions(s3: Any, prefix: str) -> int:
    return len(s3.list_object_versions(Bucket="curated", Prefix=prefix).get("Versions", []))


def _events(platform: dict[str, Any]) -> list[str]:
    messages = platform["sqs"].receive_message(QueueUrl=platform["queue"], MaxNumberOfMessages=10)
    return [json.loads(m["Body"])["detail-type"] for m in messages.get("Messages", [])]


def test_a_duplicated_s3_event_writes_nothing_twice(platform: dict[str, Any]) -> None:
    from functions.prepare_data import handler

    # GIVEN one upload and its S3 event
    s3 = platform["s3"]
    event = _s3_event(s3, "uploads/churn/a.csv", generate(30, seed=11).to_csv(index=False).encode())
    # WHEN the event is delivered twice
    first = handler(event, _context())
    second = handler(event, _context())
    # THEN the second delivery returns the first's result and writes no object version and no event
    assert first == second and first["uploads"][0]["curated_rows"] == 30
    assert _versions(s3, "curated/churn/") == 1
    assert _versions(s3, "manifests/churn/") == 1
    assert _events(platform) == ["DatasetValidated"]


def test_a_new_version_of_the_same_key_is_prepared(platform: dict[str, Any]) -> None:
    from functions.prepare_data import handler

    # GIVEN two versions uploaded under one key
    s3 = platform["s3"]
    first = handler(
        _s3_event(s3, "uploads/churn/a.csv", generate(10, seed=12).to_csv(index=False).encode()), _context()
    )
    second = handler(
        _s3_event(s3, "uploads/churn/a.csv", generate(12, seed=13).to_csv(index=False).encode()), _context()
    )
    # THEN each is its own upload, both curated
    assert first["uploads"][0]["upload_id"] != second["uploads"][0]["upload_id"]
    assert _versions(s3, "manifests/churn/") == 2


def test_a_ragged_upload_curates_its_good_rows(platform: dict[str, Any]) -> None:
    from functions.prepare_data import handler

    # GIVEN a CSV of 40 rows whose line 12 lost its last fields and line 31 has bytes that are not UTF-8
    s3 = platform["s3"]
    lines = generate(40, seed=14).to_csv(index=False).encode().splitlines()
    lines[11] = b",".join(lines[11].split(b",")[:4])
    at = len(lines[30]) + 1
    lines[30] = lines[30] + b"\xff"
    event = _s3_event(s3, "uploads/churn/ragged.csv", b"\n".join(lines) + b"\n")
    # WHEN the prepare-data function handles its S3 event
    (result,) = handler(event, _context())["uploads"]
    # THEN the 38 good rows are curated and the two bad lines quarantined: 40 rows in, none lost
    assert (result["rows"], result["curated_rows"], result["quarantined_rows"]) == (40, 38, 2)
    assert result["reason"] is None and _versions(s3, "curated/churn/") == 1
    curated = pd.read_parquet(
        io.BytesIO(
            s3.get_object(Bucket="curated", Key=result["curated_uri"].removeprefix("s3://curated/"))[
                "Body"
            ].read()
        )
    )
    assert len(curated) == 38
    # AND the quarantine report names each bad line, its number in the file and why
    prefix = f"quarantine/churn/{result['upload_id']}/"
    report = json.loads(s3.get_object(Bucket="curated", Key=prefix + "report.json")["Body"].read())
    assert [(v["line"], v["rule"], v["reason"]) for v in report["violations"]] == [
        (12, "ragged", "4 fields, expected 10"),
        (31, "encoding", f"byte {at} of the line is not UTF-8 (invalid start byte)"),
    ]
    assert (report["curated_rows"], report["quarantined_rows"], report["whole_file"]) == (38, 2, False)
    rows = pd.read_csv(io.BytesIO(s3.get_object(Bucket="curated", Key=prefix + "rows.csv")["Body"].read()))
    assert rows["_line"].tolist() == [12, 31]
    assert sorted(_events(platform)) == ["DatasetQuarantined", "DatasetValidated"]
