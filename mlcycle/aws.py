"""Default AWS clients.

Every adapter takes its client as an argument and builds one from here only when none is given, so tests
inject moto clients without patching. boto3 itself honours ``AWS_ENDPOINT_URL``, which is how Lambdas
and jobs reach the embedded AWS with unchanged code.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@cache
def client(service: str, region: str | None = None) -> Any:
    """A cached boto3 client (clients are thread-safe; building one costs ~0.2 s on a cold start)."""
    return boto3.session.Session().client(service, region_name=region, config=_CONFIG)  # type: ignore[call-overload]


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``("bucket", "key")``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
