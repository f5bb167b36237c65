"""One embedded AWS for the whole session, and helpers to deploy test functions on it."""

from __future__ import annotations

import io
import json
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from mlcycle.local import server
from mlcycle.local.server import EmbeddedAws

HANDLERS = "tests.functional.local.handlers.basic"
_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture(scope="package")
def embedded_aws() -> Iterator[EmbeddedAws]:
    aws = server.start()
    yield aws
    aws.stop()


@pytest.fixture(scope="package")
def aws_client(embedded_aws: EmbeddedAws) -> Callable[[str], Any]:
    """Cached boto3 clients on the embedded AWS; a short read timeout turns a deadlock into a failure."""
    clients: dict[str, Any] = {}
    config = Config(read_timeout=30, retries={"max_attempts": 1})

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = boto3.client(  # type: ignore[call-overload]  # service is a runtime str
                service,
                endpoint_url=embedded_aws.endpoint_url,
                region_name=embedded_aws.ctx.region,
                config=config,
            )
        return clients[service]

    return client


@pytest.fixture(scope="package")
def lambda_role(aws_client: Callable[[str], Any]) -> str:
    role = aws_client("iam").create_role(RoleName="test-lambda", AssumeRolePolicyDocument=json.dumps(_TRUST))
    return str(role["Role"]["Arn"])


def unique(prefix: str) -> str:
    """Names unique to a test, so tests share one embedded AWS without resetting it."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


_HANDLERS_FILE = Path(__file__).with_name("handlers") / "basic.py"
#: Where the test handlers record what they receive (they run in child processes): one file per function.
RECORD_DIR = Path(tempfile.mkdtemp(prefix="mlcycle-lambda-records-"))


def _zip() -> bytes:
    """The functions' code: the test handlers at their dotted path, as a bundle holds its modules."""
    buffer = io.BytesIO()
    package = HANDLERS.rsplit(".", 1)[0].replace(".", "/")
    with zipfile.ZipFile(buffer, "w") as archive:
        parts = package.split("/")
        for depth in range(1, len(parts) + 1):
            archive.writestr("/".join(parts[:depth]) + "/__init__.py", "")
        archive.writestr(f"{package}/basic.py", _HANDLERS_FILE.read_text())
    return buffer.getvalue()


def received(function_arn: str) -> list[Any]:
    """What the ``record`` handlers of a function wrote, in order."""
    path = RECORD_DIR / f"{function_arn.rsplit(':', 1)[-1]}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="package")
def make_function(aws_client: Callable[[str], Any], lambda_role: str) -> Callable[..., str]:
    """Create a function running ``handlers.basic.<handler>``; returns its ARN."""
    code = _zip()

    def make(handler: str, *, env: dict[str, str] | None = None, name: str | None = None) -> str:
        function = aws_client("lambda").create_function(
            FunctionName=name or unique(handler.rsplit(".", 1)[-1]),
            Runtime="python3.13",
            Role=lambda_role,
            Handler=handler if "." in handler else f"{HANDLERS}.{handler}",
            Code={"ZipFile": code},
            Environment={"Variables": {"RECORD_DIR": str(RECORD_DIR), **(env or {})}},
            Timeout=30,
            MemorySize=256,
        )
        return str(function["FunctionArn"])

    return make


@pytest.fixture(scope="package")
def wait_for() -> Callable[..., Any]:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""

    def wait(probe: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = probe()
            if result:
                return result
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout}s waiting for {what}")

    return wait
