"""Handlers for the embedded AWS tests. They run in the functions' execution environments (child processes,
from the zip the tests create), so what they record goes to files under ``RECORD_DIR``, one JSON line each."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import boto3


def _append(name: str, value: Any) -> int:
    """Append one JSON line to ``RECORD_DIR/name.jsonl`` (one write: safe across processes); returns the
    number of lines now in the file."""
    path = Path(os.environ["RECORD_DIR"]) / f"{name}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, (json.dumps(value) + "\n").encode())
    finally:
        os.close(fd)
    return len(path.read_text().splitlines())


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
    attempt = _append(f"attempts-{event['key']}", time.time())
    if attempt == 1:
        raise RetryableError(f"attempt {attempt} for {event['key']}")
    return {"key": event["key"], "attempt": attempt}


def record(event: Any, context: Any) -> None:
    _append(context.function_name, event)


def slow_record(event: Any, context: Any) -> dict[str, Any]:
    """Records when it started and ended, sleeping ``event["seconds"]`` in between, and its process id."""
    started = time.time()
    time.sleep(float(event.get("seconds", 1)))
    entry = {"started": started, "ended": time.time(), "pid": os.getpid(), "event": event}
    _append(context.function_name, entry)
    return entry


def fail_and_record(event: Any, context: Any) -> None:
    """Records the attempt's time, then fails (asynchronous retries)."""
    _append(context.function_name, {"at": time.time(), "event": event})
    raise RuntimeError(f"failing as asked: {event}")


def die(event: Any, context: Any) -> None:
    """The runtime process ends in the middle of the invocation."""
    os._exit(3)


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
    """Invokes event["target"] synchronously from inside a handler."""
    response = boto3.client("lambda").invoke(FunctionName=event["target"], Payload=b"{}")
    return {"function_error": response.get("FunctionError"), "payload": response["Payload"].read().decode()}
