"""Where a command finds the platform: the running embedded AWS, or the deployed stack in AWS.

``mlcycle local up`` records its endpoint and the platform's names in ``.mlcycle/local.json``; when that
service is running, commands talk to it. Otherwise they use the default AWS credentials and read the
names from the CloudFormation stack's outputs, so the same command works in both places.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from mlcycle.application.platform import Platform
from mlcycle.config import Settings

#: What ``mlcycle local up`` records while it runs (written by the embedded AWS's daemon).
STATE_DIR = Path(".mlcycle")
STATE_FILE = STATE_DIR / "local.json"


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
        # The embedded AWS checks no signature: a dummy key pair, so no AWS account or profile is needed.
        key = "testing" if self.local else None
        session = boto3.session.Session(
            region_name=self.region, aws_access_key_id=key, aws_secret_access_key=key
        )
        return session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def read_state() -> dict[str, object] | None:
    """The running embedded AWS's state, or None when none runs (a stale file is ignored)."""
    if not STATE_FILE.exists():
        return None
    state: dict[str, object] = json.loads(STATE_FILE.read_text())
    return state if alive(int(str(state["pid"]))) else None


def connect(settings: Settings) -> Connection:
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
    try:
        return Platform.from_outputs(outputs)
    except KeyError as exc:
        raise NotConnectedError(f"stack {settings.prefix!r} in AWS: {exc.args[0]}") from exc
