"""Lambda functions of the embedded AWS run our handlers in-process, on every invocation path."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from mlcycle.local.awslambda import invocations
from tests.functional.local.conftest import received

Client = Callable[[str], Any]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _name(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def _invoke(aws_client: Client, arn: str, payload: Any) -> tuple[dict[str, Any], Any]:
    response = aws_client("lambda").invoke(FunctionName=arn, Payload=json.dumps(payload).encode())
    return response, json.loads(response["Payload"].read())


def _received(function_arn: str, count: int = 1) -> Callable[[], list[Any] | None]:
    def probe() -> list[Any] | None:
        events = received(function_arn)
        return list(events) if len(events) >= count else None

    return probe


def test_sync_invoke_returns_the_handler_result_with_context(aws_client: Client, make_function: Any) -> None:
    # GIVEN a function running the echo handler
    arn = make_function("echo")
    # WHEN it is invoked synchronously
    response, payload = _invoke(aws_client, arn, {"hello": "world"})
    # THEN the handler's return value comes back, and the context carries what Powertools reads
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert payload["event"] == {"hello": "world"}
    context = payload["context"]
    assert context["function_name"] == _name(arn)
    assert context["invoked_function_arn"] == arn
    assert context["memory_limit_in_mb"] == 256
    assert context["log_group_name"] == f"/aws/lambda/{_name(arn)}"
    assert 0 < context["remaining_ms"] <= 30_000
    uuid.UUID(context["aws_request_id"])


def test_environment_is_the_functions_during_the_call_only(aws_client: Client, make_function: Any) -> None:
    arn = make_function("echo", env={"GREETING": "hi"})
    _, payload = _invoke(aws_client, arn, {})
    env = payload["env"]
    assert env["GREETING"] == "hi"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == _name(arn)
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["_HANDLER"] == "tests.functional.local.handlers.basic.echo"
    assert env["AWS_ENDPOINT_URL"] == os.environ["AWS_ENDPOINT_URL"]  # still the embedded AWS
    assert "GREETING" not in os.environ
    assert "AWS_LAMBDA_FUNCTION_NAME" not in os.environ


def test_handler_exception_becomes_a_function_error(aws_client: Client, make_function: Any) -> None:
    arn = make_function("fail")
    response, payload = _invoke(aws_client, arn, {"error": "BadInputError"})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "BadInputError"
    assert "failing as asked" in payload["errorMessage"]
    assert any("basic.py" in line for line in payload["stackTrace"])


def test_tail_log_and_cloudwatch_logs_hold_the_invocation(aws_client: Client, make_function: Any) -> None:
    arn = make_function("fail")
    response = aws_client("lambda").invoke(FunctionName=arn, Payload=b"{}", LogType="Tail")
    tail = base64.b64decode(response["LogResult"]).decode()
    assert tail.startswith("START RequestId:")
    assert "REPORT RequestId:" in tail
    streams = aws_client("logs").describe_log_streams(logGroupName=f"/aws/lambda/{_name(arn)}")
    assert streams["logStreams"]


def test_unimportable_handler_reports_an_import_error(aws_client: Client, make_function: Any) -> None:
    # GIVEN a function whose code is inline (CDK custom resources): not importable in this process
    arn = make_function("index.handler")
    response, payload = _invoke(aws_client, arn, {})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert "index" in payload["errorMessage"]


def test_async_invoke_runs_in_the_background(aws_client: Client, make_function: Any, wait_for: Any) -> None:
    arn = make_function("record")
    response = aws_client("lambda").invoke(FunctionName=arn, InvocationType="Event", Payload=b'{"n": 1}')
    assert response["StatusCode"] == 202
    assert invocations.wait_for_async(timeout=10)
    assert received(arn) == [{"n": 1}]


def test_async_failure_goes_to_the_on_failure_destination(
    aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    # GIVEN a failing function whose asynchronous failures go to a queue
    sqs = aws_client("sqs")
    queue_url = sqs.create_queue(QueueName=unique("failures"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    arn = make_function("fail")
    aws_client("lambda").put_function_event_invoke_config(
        FunctionName=arn,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    # WHEN it is invoked asynchronously
    aws_client("lambda").invoke(
        FunctionName=arn, InvocationType="Event", Payload=b'{"error": "BadInputError"}'
    )
    # THEN the invocation record reaches the queue
    messages = wait_for(
        lambda: sqs.receive_message(QueueUrl=queue_url).get("Messages"), what="the failure record"
    )
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"error": "BadInputError"}
    assert record["responsePayload"]["errorType"] == "BadInputError"


def test_s3_object_created_notification_invokes_the_function(
    aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    s3, bucket = aws_client("s3"), unique("landing")
    arn = make_function("record")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    s3.put_object(Bucket=bucket, Key="uploads/churn/a.csv", Body=b"x,y\n")
    (event,) = wait_for(_received(arn), what="the S3 notification")
    record = event["Records"][0]
    assert record["eventSource"] == "aws:s3"
    assert record["s3"]["bucket"]["name"] == bucket
    # moto quote_plus-encodes the key, "/" included (AWS keeps "/"): handlers must unquote_plus it
    assert unquote_plus(record["s3"]["object"]["key"]) == "uploads/churn/a.csv"


def test_sns_subscription_invokes_the_function(aws_client: Client, make_function: Any, wait_for: Any) -> None:
    sns = aws_client("sns")
    topic = sns.create_topic(Name=unique("topic"))["TopicArn"]
    arn = make_function("record")
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=arn)
    sns.publish(TopicArn=topic, Message="model deployed")
    (event,) = wait_for(_received(arn), what="the SNS delivery")
    assert event["Records"][0]["Sns"]["Message"] == "model deployed"


def test_handler_writing_to_s3_triggers_another_without_deadlock(
    aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    # GIVEN A, which writes to a bucket whose notifications invoke B
    s3, bucket = aws_client("s3"), unique("chained")
    s3.create_bucket(Bucket=bucket)
    b_arn = make_function("record")
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": b_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    a_arn = make_function("copy_to_bucket", env={"TARGET_BUCKET": bucket})
    # WHEN A runs synchronously (the client's read timeout would turn a deadlock into an error)
    response, payload = _invoke(aws_client, a_arn, {"step": "a"})
    # THEN A returns and B receives the notification of A's write
    assert "FunctionError" not in response
    (event,) = wait_for(_received(b_arn), what="B's notification")
    assert unquote_plus(event["Records"][0]["s3"]["object"]["key"]) == payload["key"]


def test_async_chain_through_s3_runs_on_the_worker(
    aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    # GIVEN upload -> A (async, writes to a second bucket) -> B
    s3, first, second = aws_client("s3"), unique("first"), unique("second")
    b_arn = make_function("record")
    a_arn = make_function("copy_to_bucket", env={"TARGET_BUCKET": second})
    for bucket, target in ((first, a_arn), (second, b_arn)):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {"LambdaFunctionArn": target, "Events": ["s3:ObjectCreated:*"]}
                ]
            },
        )
    s3.put_object(Bucket=first, Key="in.json", Body=b"{}")
    wait_for(_received(a_arn), what="A")
    wait_for(_received(b_arn), what="B")


def _run_state_machine(
    aws_client: Client, definition: dict[str, Any], execution_input: Any, wait_for: Any
) -> Any:
    sfn = aws_client("stepfunctions")
    machine = sfn.create_state_machine(
        name=unique("machine"),
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/test-states",
    )
    execution = sfn.start_execution(
        stateMachineArn=machine["stateMachineArn"], input=json.dumps(execution_input)
    )

    def finished() -> dict[str, Any] | None:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        return None if described["status"] == "RUNNING" else described

    return wait_for(finished, timeout=30, what="the execution")


def test_step_functions_retry_and_catch_match_the_error_type(
    aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    # GIVEN a task that fails once with RetryableError (retried), then one that raises BadInputError (caught)
    flaky, fail = make_function("flaky"), make_function("fail")
    definition = {
        "StartAt": "Flaky",
        "States": {
            "Flaky": {
                "Type": "Task",
                "Resource": flaky,
                "Retry": [{"ErrorEquals": ["RetryableError"], "IntervalSeconds": 1, "MaxAttempts": 2}],
                "ResultPath": "$.flaky",
                "Next": "Fail",
            },
            "Fail": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": fail, "Payload": {"error": "BadInputError"}},
                "Catch": [{"ErrorEquals": ["BadInputError"], "ResultPath": "$.error", "Next": "Caught"}],
                "Next": "Caught",
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    key = unique("key")
    # WHEN it runs
    described = _run_state_machine(aws_client, definition, {"key": key}, wait_for)
    # THEN the retry succeeded on the second attempt and the catch saw the error type
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["flaky"] == {"key": key, "attempt": 2}
    assert output["error"]["Error"] == "BadInputError"
    assert json.loads(output["error"]["Cause"])["errorType"] == "BadInputError"


def test_step_functions_uncaught_error_fails_the_execution(
    aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    fail = make_function("fail")
    definition = {"StartAt": "Fail", "States": {"Fail": {"Type": "Task", "Resource": fail, "End": True}}}
    described = _run_state_machine(aws_client, definition, {"error": "RetryableError"}, wait_for)
    assert described["status"] == "FAILED"
    assert described.get("error") == "RetryableError"


def test_sqs_event_source_mapping_invokes_the_function(
    aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    sqs = aws_client("sqs")
    url = sqs.create_queue(QueueName=unique("jobs"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    arn = make_function("record")
    aws_client("lambda").create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=arn, BatchSize=1)
    sqs.send_message(QueueUrl=url, MessageBody="train churn")
    (event,) = wait_for(_received(arn), what="the SQS batch")
    assert event["Records"][0]["body"] == "train churn"
    assert event["Records"][0]["eventSourceARN"] == queue_arn


def test_nested_synchronous_invoke_completes(aws_client: Client, make_function: Any) -> None:
    # GIVEN a handler that synchronously invokes another function (each runs in its own environment)
    callee, caller = make_function("echo"), make_function("invoke_other")
    # WHEN it runs
    response, payload = _invoke(aws_client, caller, {"target": callee})
    # THEN the inner call returns the callee's answer and the outer one completes
    assert "FunctionError" not in response
    assert payload["function_error"] is None
    assert json.loads(payload["payload"])["context"]["function_name"] == _name(callee)
