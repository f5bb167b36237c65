"""Lambda execution environments of the embedded AWS behave as Lambda's: the function's own bundle in a
process of its own, concurrency up to the reserved one, timeouts, and asynchronous retries with backoff
that end in the dead-letter queue."""

from __future__ import annotations

import io
import json
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlcycle.local.awslambda import asynchronous, invocations
from mlcycle.local.server import EmbeddedAws
from tests.functional.local.conftest import received

Client = Callable[[str], Any]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _invoke(aws_client: Client, arn: str, payload: Any) -> tuple[dict[str, Any], Any]:
    response = aws_client("lambda").invoke(FunctionName=arn, Payload=json.dumps(payload).encode())
    return response, json.loads(response["Payload"].read())


def _queue(aws_client: Client) -> tuple[str, str]:
    sqs = aws_client("sqs")
    url = sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


@pytest.fixture
def fast_clock(embedded_aws: EmbeddedAws) -> Iterator[float]:
    """The embedded AWS's clock 60 times faster: Lambda's 1- and 2-minute retry delays take 1 and 2 s."""
    previous = embedded_aws.ctx.time_scale
    embedded_aws.ctx.time_scale = 60
    yield 60.0
    embedded_aws.ctx.time_scale = previous


def test_a_function_runs_its_bundle_not_the_checkout(
    aws_client: Client, lambda_role: str, make_function: Any
) -> None:
    # GIVEN a function whose zip holds a module of its own, and one whose handler exists only in the checkout
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("own.py", "import os\ndef handler(event, context):\n    return {'file': __file__}\n")
    own = aws_client("lambda").create_function(
        FunctionName=unique("own"),
        Runtime="python3.13",
        Role=lambda_role,
        Handler="own.handler",
        Code={"ZipFile": archive.getvalue()},
    )["FunctionArn"]
    checkout_only = make_function("mlcycle.names.EventType")
    # WHEN both are invoked
    _, answer = _invoke(aws_client, own, {})
    response, error = _invoke(aws_client, checkout_only, {})
    # THEN the first ran from its unpacked zip, and the second cannot import what its bundle lacks
    assert "/lambda-code/" in answer["file"]
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "mlcycle" in error["errorMessage"]


def test_asynchronous_invocations_run_concurrently(aws_client: Client, make_function: Any) -> None:
    # GIVEN a function that takes a second and a half
    arn = make_function("slow_record")
    # WHEN it is invoked asynchronously three times at once
    for n in range(3):
        aws_client("lambda").invoke(
            FunctionName=arn, InvocationType="Event", Payload=json.dumps({"n": n, "seconds": 1.5})
        )
    assert invocations.wait_for_async(timeout=30)
    # THEN they ran at the same time, each in an environment (process) of its own
    runs = received(arn)
    assert sorted(run["event"]["n"] for run in runs) == [0, 1, 2]
    assert len({run["pid"] for run in runs}) == 3
    assert max(run["started"] for run in runs) < min(run["ended"] for run in runs)


def test_reserved_concurrency_throttles_synchronous_calls_and_queues_asynchronous_ones(
    aws_client: Client, make_function: Any
) -> None:
    # GIVEN a function with a reserved concurrency of 1, busy with a synchronous call
    arn = make_function("slow_record")
    aws_client("lambda").put_function_concurrency(FunctionName=arn, ReservedConcurrentExecutions=1)
    busy = threading.Thread(target=_invoke, args=(aws_client, arn, {"n": "busy", "seconds": 2}))
    busy.start()
    try:
        _wait_until_busy(aws_client, arn)
        # WHEN another synchronous call comes in, THEN it is throttled with a 429
        with pytest.raises(ClientError) as raised:
            _invoke(aws_client, arn, {"n": "throttled", "seconds": 0})
        assert raised.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        # AND an asynchronous one waits for the environment instead of failing
        aws_client("lambda").invoke(
            FunctionName=arn, InvocationType="Event", Payload=json.dumps({"n": "queued", "seconds": 0})
        )
    finally:
        busy.join()
    assert invocations.wait_for_async(timeout=30)
    runs = {run["event"]["n"]: run for run in received(arn)}
    assert set(runs) == {"busy", "queued"}
    assert runs["queued"]["started"] >= runs["busy"]["ended"]


def _wait_until_busy(aws_client: Client, arn: str) -> None:
    """Until the function's one environment is taken (the busy call has started)."""
    from mlcycle.local import context

    state = context.installed(invocations.LambdaState)
    name = arn.rsplit(":", 1)[-1]
    for _ in range(200):
        pools = [pool for key, (_, pool) in state.environments._pools.items() if key.endswith(name)]
        if pools and pools[0].busy:
            return
        threading.Event().wait(0.05)
    pytest.fail("the first call never started")


def test_an_invocation_past_its_timeout_is_stopped(
    aws_client: Client, lambda_role: str, make_function: Any
) -> None:
    # GIVEN a function with a 1-second timeout whose handler takes 5
    arn = make_function("slow_record")
    aws_client("lambda").update_function_configuration(FunctionName=arn, Timeout=1)
    # WHEN it is invoked
    response, error = _invoke(aws_client, arn, {"seconds": 5})
    # THEN it fails as Lambda's do, and never finished its work
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in error["errorMessage"]
    assert received(arn) == []
    # AND the next invocation gets a fresh environment
    _, answer = _invoke(aws_client, arn, {"seconds": 0})
    assert answer["event"] == {"seconds": 0}


def test_a_runtime_that_exits_fails_its_invocation(aws_client: Client, make_function: Any) -> None:
    arn = make_function("die")
    response, error = _invoke(aws_client, arn, {})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.ExitError"
    assert "status 3" in error["errorMessage"]


def test_asynchronous_failures_are_retried_with_backoff_then_dead_lettered(
    aws_client: Client, make_function: Any, wait_for: Any, fast_clock: float
) -> None:
    # GIVEN a failing function with a dead-letter queue and Lambda's default retries (two)
    url, queue_arn = _queue(aws_client)
    arn = make_function("fail_and_record")
    aws_client("lambda").update_function_configuration(
        FunctionName=arn, DeadLetterConfig={"TargetArn": queue_arn}
    )
    # WHEN it is invoked asynchronously
    aws_client("lambda").invoke(FunctionName=arn, InvocationType="Event", Payload=b'{"order": 7}')
    messages = wait_for(
        lambda: (
            aws_client("sqs").receive_message(QueueUrl=url, MessageAttributeNames=["All"]).get("Messages")
        ),
        timeout=30,
        what="the dead-lettered event",
    )
    # THEN it ran three times, waiting about one then two (virtual) minutes between attempts
    attempts = [entry["at"] for entry in received(arn)]
    assert len(attempts) == 3
    first_wait, second_wait = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert first_wait >= 0.9 * asynchronous.RETRY_DELAYS[0] / fast_clock
    assert second_wait >= 0.9 * asynchronous.RETRY_DELAYS[1] / fast_clock
    # AND the event reached the dead-letter queue with the error, as Lambda sends it
    (message,) = messages
    assert json.loads(message["Body"]) == {"order": 7}
    assert "failing as asked" in message["MessageAttributes"]["ErrorMessage"]["StringValue"]
    assert invocations.wait_for_async(timeout=10)


def test_maximum_retry_attempts_zero_fails_at_once(
    aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    url, queue_arn = _queue(aws_client)
    arn = make_function("fail_and_record")
    aws_client("lambda").put_function_event_invoke_config(
        FunctionName=arn, MaximumRetryAttempts=0, DestinationConfig={"OnFailure": {"Destination": queue_arn}}
    )
    aws_client("lambda").invoke(FunctionName=arn, InvocationType="Event", Payload=b'{"once": true}')
    messages = wait_for(
        lambda: aws_client("sqs").receive_message(QueueUrl=url).get("Messages"), what="the record"
    )
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert len(received(arn)) == 1
