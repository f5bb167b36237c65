"""Where a command finds the platform: the running embedded AWS, or the deployed stack in AWS.

``mlcycle local up`` records its endpoint and the platform's names in ``.mlcycle/local.json``; when that
service is running, commands talk to it. Otherwise they use the default AWS credentials and read the
names from the CloudFormation stack's outputs, so the same command works in both places.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from mlcycle.config import Settings
from mlcycle.local.platform import OUTPUTS, Platform


class NotConnectedError(RuntimeError):
    """Neither a running embedded AWS nor a deployed stack could be found."""


@dataclass(frozen=True)
class Connection:
    platform: Platform
    region: str
    endpoint_url: str | None  # None: real AWS

    @property
    def local(self) -> bool:
        return self.endpoint_url is not None

    def client(self, service: str) -> Any:
        session = boto3.session.Session(region_name=self.region)
        return session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]


def connect(settings: Settings) -> Connection:
    from mlcycle.local.daemon import read_state

    state = read_state()
    if state is not None:
        platform = Platform(**state["platform"])  # type: ignore[arg-type]
        return Connection(platform, settings.region, str(state["endpoint_url"]))
    return Connection(_deployed_platform(settings), settings.region, None)


def _deployed_platform(settings: Settings) -> Platform:
    from botocore.exceptions import BotoCoreError, ClientError

    cloudformation = boto3.session.Session(region_name=settings.region).client("cloudformation")
    try:
        stack = cloudformation.describe_stacks(StackName=settings.prefix)["Stacks"][0]
    except (BotoCoreError, ClientError) as exc:
        raise NotConnectedError(
            "no embedded AWS is running (start one with `mlcycle local up`) and the stack "
            f"{settings.prefix!r} "
            f"could not be read from AWS: {exc}"
        ) from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return Platform(**{field: outputs[name] for field, name in OUTPUTS.items()})
