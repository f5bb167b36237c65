"""An embedded AWS with the platform provisioned into it from a synthesized cloud assembly: for the demo,
the daemon and the tests. Synthesizing is the caller's business (the CLI runs infra's synth)."""

from __future__ import annotations

import json
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcycle.application import cycle
from mlcycle.application.platform import Platform
from mlcycle.config import Settings
from mlcycle.local import server
from mlcycle.local.cloudformation.provision import Stack, provision

Say = Callable[[str], None]


@dataclass
class LocalPlatform:
    aws: server.EmbeddedAws
    stack: Stack
    platform: Platform
    clients: cycle.Clients
    #: Set before leaving :func:`local_platform` to save the state in its work directory for the next start.
    keep_state: bool = False


#: The provisioned stack's resources and outputs, in the work directory (a restart reads them there).
STACK_FILE = "stack.pickle"


def stack_name(settings: Settings) -> str:
    return settings.prefix


@contextmanager
def local_platform(
    settings: Settings,
    assembly: Path,
    *,
    port: int = 0,
    time_scale: float = 1.0,
    work_dir: Path | None = None,
    say: Say = lambda _m: None,
) -> Iterator[LocalPlatform]:
    """Start the embedded AWS, provision the synthesized stack into it, stop everything on exit. A
    ``work_dir`` that holds a saved state (see :func:`restart`) starts from it, already provisioned."""
    owned = work_dir is None
    work = work_dir or Path(tempfile.mkdtemp(prefix="mlcycle-local-"))
    aws = server.start(port=port or None, region=settings.region, time_scale=time_scale, work_dir=work)
    local: LocalPlatform | None = None
    try:
        say(f"embedded AWS listening on {aws.endpoint_url}")
        if aws.resumed is not None:
            stack = _saved_stack(work)
            say(f"carried on from the state saved in {work}: {_resumed(aws.resumed)}")
        else:
            stack = provision(
                assembly,
                stack_name(settings),
                endpoint_url=aws.endpoint_url,
                region=settings.region,
                account=aws.ctx.account,
            )
            (work / STACK_FILE).write_bytes(pickle.dumps(stack))
            say(
                f"provisioned {len(stack.resources)} resources from "
                f"{assembly}/{stack_name(settings)}.template.json"
            )
        platform = Platform.from_outputs(stack.outputs)
        clients = cycle.Clients.for_endpoint(aws.endpoint_url, settings.region)
        local = LocalPlatform(aws, stack, platform, clients)
        yield local
    finally:
        aws.stop(keep_state=local is not None and local.keep_state)
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def restart(local: LocalPlatform, say: Say = lambda _m: None) -> dict[str, Any]:
    """Restart the platform's embedded AWS keeping its state (``EmbeddedAws.restart``); return what it ran
    again. Clients keep working: the port stays."""
    resumed = local.aws.restart()
    say(f"embedded AWS restarted on {local.aws.endpoint_url}: {_resumed(resumed)}")
    return resumed


def _resumed(counts: dict[str, Any]) -> str:
    again = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in counts.items() if count)
    return f"resumed {again}" if again else "nothing was in flight"


def _saved_stack(work_dir: Path) -> Stack:
    path = work_dir / STACK_FILE
    if not path.exists():
        raise FileNotFoundError(f"{work_dir} holds a saved embedded AWS but no {STACK_FILE}: start afresh")
    stack: Stack = pickle.loads(path.read_bytes())  # our own file, in our own work directory
    return stack


def bus_listener(local: LocalPlatform, name: str = "bus-listener") -> Callable[[], list[dict[str, Any]]]:
    """Every event put on the platform's bus from now on, kept in an SQS queue (a rule of its own sends them
    there); returns a function that drains it: the events since the last drain, oldest first."""
    import boto3

    region = local.aws.ctx.region
    sqs = boto3.client("sqs", endpoint_url=local.aws.endpoint_url, region_name=region)
    events = boto3.client("events", endpoint_url=local.aws.endpoint_url, region_name=region)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = local.platform.event_bus
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps({"source": ["mlcycle"]}))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])

    def drain() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return found

    return drain
