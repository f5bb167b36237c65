"""Data capture that loses nothing: failed invocations are captured with their status, and records whose
S3 write failed wait for the next flush, or are kept on disk when they never could be written."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlcycle.local import context
from mlcycle.local.sagemaker import endpoints
from tests.functional.local import conftest_sagemaker
from tests.functional.local.conftest_sagemaker import (
    Client,
    SageMakerWorld,
    TrainedJob,
    create_endpoint_config,
    create_model,
    unique,
    wait_for_endpoint,
)

sm_world = conftest_sagemaker.sm_world
trained_job = conftest_sagemaker.trained_job


@pytest.fixture(scope="module")
def unwritable(trained_job: TrainedJob, aws_client: Client, wait_for: Any) -> Iterator[tuple[str, str]]:
    """An endpoint capturing into a bucket that does not exist (yet): its name and the bucket's."""
    bucket, name = unique("capture-later"), unique("endpoint")
    config = create_endpoint_config(
        aws_client,
        {"AllTraffic": create_model(aws_client, trained_job.model_data)},
        capture_uri=f"s3://{bucket}/c",
    )
    aws_client("sagemaker").create_endpoint(EndpointName=name, EndpointConfigName=config)
    wait_for_endpoint(aws_client, wait_for, name)
    yield name, bucket
    aws_client("sagemaker").delete_endpoint(EndpointName=name)


@pytest.fixture
def flushed_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """The background flush out of the way (it reads the interval on each cycle; let a running wait end)."""
    monkeypatch.setattr(endpoints, "capture_flush_seconds", 3600.0)
    time.sleep(2.2)


def _records(aws_client: Client, bucket: str) -> list[dict[str, Any]]:
    s3 = aws_client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    ]


def _invoke(aws_client: Client, name: str, body: str, inference_id: str) -> None:
    try:
        aws_client("sagemaker-runtime").invoke_endpoint(
            EndpointName=name, Body=body, ContentType="text/csv", InferenceId=inference_id
        )
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ModelError"


def _pending(inference_id: str) -> bool:
    state = context.installed(endpoints.EndpointsState)
    lines = [line for batch in state.buffer.pending.values() for _, line in batch.entries]
    return any(json.loads(line)["eventMetadata"].get("inferenceId") == inference_id for line in lines)


def test_a_failed_write_keeps_the_records_for_the_next_flush(
    unwritable: tuple[str, str], sm_world: SageMakerWorld, aws_client: Client, flushed_by_hand: None
) -> None:
    name, bucket = unwritable
    row = ",".join(str(v) for v in sm_world.features[0])
    # GIVEN a good and a failed invocation captured while the destination bucket does not exist
    _invoke(aws_client, name, row, "good-1")
    _invoke(aws_client, name, "not,a,number", "bad-1")
    # WHEN a flush fails to write them
    assert endpoints.flush_capture() == 0
    # THEN they wait in the buffer, and once the bucket exists the next flush writes both
    assert _pending("good-1") and _pending("bad-1")
    aws_client("s3").create_bucket(Bucket=bucket)
    assert endpoints.flush_capture() == 1
    records = {r["eventMetadata"]["inferenceId"]: r for r in _records(aws_client, bucket)}
    assert set(records) == {"good-1", "bad-1"}
    # AND the failed invocation is captured with its status and the model's error as its output
    assert "invocationStatus" not in records["good-1"]["eventMetadata"]
    failed = records["bad-1"]
    assert failed["eventMetadata"]["invocationStatus"] >= 400
    assert failed["captureData"]["endpointInput"]["data"] == "not,a,number"
    assert failed["captureData"]["endpointOutput"]["mode"] == "OUTPUT"


def test_records_that_can_never_be_written_are_kept_on_disk(
    unwritable: tuple[str, str], sm_world: SageMakerWorld, aws_client: Client, flushed_by_hand: None
) -> None:
    name, bucket = unwritable
    s3 = aws_client("s3")
    # The tests of this module are separate xdist units: the bucket exists only if the one above ran first
    if bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
    # GIVEN a record whose destination is gone
    _invoke(aws_client, name, ",".join(str(v) for v in sm_world.features[1]), "kept-1")
    # WHEN every attempt fails, THEN the record is kept in a file under the work directory, not dropped
    for _ in range(endpoints.capture_write_attempts):
        endpoints.flush_capture()
    assert not _pending("kept-1")
    ctx = context.installed(endpoints.EndpointsState).ctx
    kept = list((ctx.work_dir / endpoints.UNDELIVERED_CAPTURE).rglob("*.jsonl"))
    lines = [json.loads(line) for path in kept for line in path.read_text().splitlines()]
    assert [
        r["eventMetadata"]["inferenceId"] for r in lines if r["eventMetadata"].get("inferenceId") == "kept-1"
    ]
