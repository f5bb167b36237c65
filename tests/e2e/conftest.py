"""End-to-end fixtures: the synthesized app, provisioned into an embedded AWS once per test module.

Provisioning a platform (~120 resources) takes seconds, so the tests of a module share one: they run in
their module's order on it, and each module says what its tests leave behind for the next ones. A
module's tests stay on one xdist worker (its ``xdist_group``; the embedded AWS picks a free port, so
workers run one each).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlcycle.config import Settings
from mlcycle.local.session import LocalPlatform, local_platform


@pytest.fixture(scope="session")
def assembly(settings: Settings, request: pytest.FixtureRequest) -> Path:
    """The cloud assembly the platforms are provisioned from: the one named by MLCYCLE_ASSEMBLY if it holds
    the stack's template, else the session's gated synth (shared with the infra suite)."""
    given = os.environ.get("MLCYCLE_ASSEMBLY")
    if given and (Path(given) / f"{settings.prefix}.template.json").exists():
        return Path(given)
    gated: Path = request.getfixturevalue("gated_assembly")
    return gated


@pytest.fixture(scope="module")
def local(settings: Settings, assembly: Path) -> Iterator[LocalPlatform]:
    """The module's platform: the synthesized app provisioned into its own embedded AWS."""
    with local_platform(settings, assembly) as platform:
        yield platform


@pytest.fixture(scope="module")
def bus_events(local: LocalPlatform, settings: Settings) -> Callable[[], list[dict[str, Any]]]:
    """Drains an SQS queue that receives every event put on our bus since the last drain (a rule the
    fixture attaches: events from before the fixture was first requested are not there)."""
    session = boto3.session.Session(region_name=settings.region)
    sqs = session.client("sqs", endpoint_url=local.aws.endpoint_url)
    events = session.client("events", endpoint_url=local.aws.endpoint_url)
    url = sqs.create_queue(QueueName="pipeline-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = local.platform.event_bus
    events.put_rule(Name="all-mlcycle", EventBusName=bus, EventPattern=json.dumps({"source": ["mlcycle"]}))
    events.put_targets(Rule="all-mlcycle", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])

    def drain() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    return drain
