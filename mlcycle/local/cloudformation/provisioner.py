"""The provisioner's state: clients pointed at the embedded AWS and CloudFormation-style physical names.

Shared by the walk over the template (mlcycle.local.cloudformation.provision) and the resource creators
(mlcycle.local.cloudformation.resources), which import it from here rather than from each other.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3


class Provisioner:
    """Creates one template's resources through boto3 clients pointed at the embedded AWS."""

    def __init__(self, stack_name: str, region: str, account: str, endpoint_url: str) -> None:
        self.stack_name = stack_name
        self.region = region
        self.account = account
        self.session = boto3.session.Session(region_name=region)
        self.endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}
        #: Calls made once every resource exists (access logging needs the log bucket's policy first).
        self.deferred: list[Callable[[], object]] = []
        self.work = Path(tempfile.mkdtemp(prefix="mlcycle-provision-"))

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]
        return self._clients[service]

    def physical_name(self, logical_id: str, max_len: int, lower: bool = False) -> str:
        """Like CloudFormation: stack-logical-suffix, stable for a stack (so a reset keeps names)."""
        suffix = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:12]
        name = f"{self.stack_name}-{logical_id}"[: max_len - 13] + "-" + suffix
        return name.lower() if lower else name

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:aws:{service}:{self.region if region else ''}:{self.account if account else ''}:{resource}"
        )


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
