"""Handlers for the embedded AWS tests: they run in the test process, so they record into module state."""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from typing import Any

import boto3

#: Events received, by function name (function names are unique per test).
RECEIVED: dict[str, list[Any]] = defaultdict(list)
_ATTEMPTS: dict[str, int] = defaultdict(int)
_LOCK = threading.Lock()

_ENV_NAMES = (
    "GREETING",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_REGION",
    "_HANDLER",
    "AWS_ENDPOINT_URL",
)


class RetryableError(Exception):
    """Step Functions retries this one."""


class BadInputError(Exception):
    """Step Functions catches this one."""


def echo(event: Any, context: Any) -> dict[str, Any]:
    return {
        "event": event,
        "env": {name: os.environ.get(name) for name in _ENV_NAMES},
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
    }


def fail(event: Any, context: Any) -> None:
    errors = {"RetryableError": RetryableError, "BadInputError": BadInputError}
    raise errors.get(event.get("error", ""), ValueError)(f"failing as asked: {event}")


def flaky(event: Any, context: Any) -> dict[str, Any]:
    """Raises RetryableError on the first call for a key, succeeds on the next."""
    with _LOCK:
        _ATTEMPTS[event["key"]] += 1
        attempt = _ATTEMPTS[event["key"]]
    if attempt == 1:
        raise RetryableError(f"attempt {attempt} for {event['key']}")
    return {"key": event["key"], "attempt": attempt}


def record(event: Any, context: Any) -> None:
    with _LOCK:
        RECEIVED[context.function_name].append(event)


def copy_to_bucket(event: Any, context: Any) -> dict[str, str]:
    """Writes an object to TARGET_BUCKET: the write notifies another function while this one runs."""
    key = f"copied/{context.aws_request_id}.json"
    boto3.client("s3").put_object(Bucket=os.environ["TARGET_BUCKET"], Key=key, Body=b"{}")
    record(event, context)
    return {"key": key}


def put_event(event: Any, context: Any) -> None:
    """Puts an event on EVENT_BUS from inside a handler."""
    boto3.client("events").put_events(
        Entries=[
            {
                "Source": "tests",
                "DetailType": "Chained",
                "Detail": '{"from": "put_event"}',
                "EventBusName": os.environ["EVENT_BUS"],
            }
        ]
    )


def invoke_other(event: Any, context: Any) -> dict[str, Any]:
    """Invokes event["target"] synchronously from inside a handler (the one pattern that must wait)."""
    response = boto3.client("lambda").invoke(FunctionName=event["target"], Payload=b"{}")
    return {"function_error": response.get("FunctionError"), "payload": response["Payload"].read().decode()}
