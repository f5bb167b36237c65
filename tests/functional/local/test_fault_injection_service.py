"""Fault injection in the embedded AWS answers in each service's own error shape, so SDKs react as to AWS."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mlcycle.local.common import fault_injection
from mlcycle.local.server import EmbeddedAws

Client = Callable[[str], Any]


@pytest.fixture(autouse=True)
def no_faults_left() -> Iterator[None]:
    yield
    fault_injection.clear()


def _client(aws: EmbeddedAws, service: str, attempts: int) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": attempts})
    return boto3.client(service, endpoint_url=aws.endpoint_url, region_name=aws.ctx.region, config=config)  # type: ignore[call-overload]


def test_s3_slow_down_is_retried_by_the_sdk(embedded_aws: EmbeddedAws) -> None:
    # GIVEN two SlowDown answers waiting for puts into one bucket (and none for other buckets)
    s3 = _client(embedded_aws, "s3", attempts=5)
    bucket, other = f"faulty-{uuid.uuid4().hex[:8]}", f"calm-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=other)
    fault = fault_injection.slow_down(times=2, operation="PutObject", bucket=bucket)
    # WHEN an object is put there with a client that retries
    s3.put_object(Bucket=other, Key="k", Body=b"untouched")
    s3.put_object(Bucket=bucket, Key="k", Body=b"through")
    # THEN the SDK retried through both, and the object is there
    assert fault.hits == 2
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"through"


def test_s3_slow_down_reaches_a_client_that_does_not_retry(embedded_aws: EmbeddedAws) -> None:
    s3 = _client(embedded_aws, "s3", attempts=1)
    bucket = f"faulty-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    fault_injection.slow_down(times=1, bucket=bucket)
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert raised.value.response["Error"]["Code"] == "SlowDown"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_dynamodb_throttling_is_retried_or_surfaces(embedded_aws: EmbeddedAws) -> None:
    patient, impatient = _client(embedded_aws, "dynamodb", 5), _client(embedded_aws, "dynamodb", 1)
    table = f"faulty-{uuid.uuid4().hex[:8]}"
    patient.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    fault = fault_injection.throttle_dynamodb(times=3, operation="PutItem", table=table)
    patient.put_item(TableName=table, Item={"pk": {"S": "a"}})
    assert fault.hits == 3
    fault_injection.throttle_dynamodb(times=1, operation="PutItem", table=table)
    with pytest.raises(ClientError) as raised:
        impatient.put_item(TableName=table, Item={"pk": {"S": "b"}})
    assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert patient.get_item(TableName=table, Key={"pk": {"S": "a"}})["Item"]
    assert "Item" not in patient.get_item(TableName=table, Key={"pk": {"S": "b"}})
