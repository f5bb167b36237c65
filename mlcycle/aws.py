"""Default AWS clients.

Every adapter takes its client as an argument and builds one from here only when none is given, so tests
inject moto clients without patching. boto3 itself honours ``AWS_ENDPOINT_URL``, which is how Lambdas
and jobs reach the embedded AWS with unchanged code.

``client("s3")`` is typed per service as boto3-stubs types ``Session.client`` (``S3Client`` here); the
stubs are a development dependency, imported only while type checking, so Lambdas and jobs run without
them. A service the domain starts to call gets its overload (and its stubs extra) first.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Literal, overload

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_athena import AthenaClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})

#: The services the domain calls, each with its overload of :data:`client`.
Service = Literal[
    "application-autoscaling",
    "athena",
    "dynamodb",
    "events",
    "glue",
    "s3",
    "sagemaker",
    "sns",
    "stepfunctions",
]


class _Clients:
    """:data:`client`: ``client(service, region=None)`` and ``client.cache_clear()``, as ``functools.cache``
    offers them, with a return type per service."""

    @overload
    def __call__(
        self, service: Literal["application-autoscaling"], region: str | None = None
    ) -> ApplicationAutoScalingClient: ...
    @overload
    def __call__(self, service: Literal["athena"], region: str | None = None) -> AthenaClient: ...
    @overload
    def __call__(self, service: Literal["dynamodb"], region: str | None = None) -> DynamoDBClient: ...
    @overload
    def __call__(self, service: Literal["events"], region: str | None = None) -> EventBridgeClient: ...
    @overload
    def __call__(self, service: Literal["glue"], region: str | None = None) -> GlueClient: ...
    @overload
    def __call__(self, service: Literal["s3"], region: str | None = None) -> S3Client: ...
    @overload
    def __call__(self, service: Literal["sagemaker"], region: str | None = None) -> SageMakerClient: ...
    @overload
    def __call__(self, service: Literal["sns"], region: str | None = None) -> SNSClient: ...
    @overload
    def __call__(self, service: Literal["stepfunctions"], region: str | None = None) -> SFNClient: ...
    def __call__(self, service: Service, region: str | None = None) -> BaseClient:
        return _cached(service, region)

    @staticmethod
    def cache_clear() -> None:
        """Forget the clients built so far (the next call builds one against the current environment)."""
        _cached.cache_clear()


#: A cached boto3 client (clients are thread-safe; building one costs ~0.2 s on a cold start).
client = _Clients()


@cache
def _cached(service: Service, region: str | None) -> BaseClient:
    return boto3.session.Session().client(service, region_name=region, config=_CONFIG)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``("bucket", "key")``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


#: What S3 answers for an object that is not there: GetObject says NoSuchKey, HeadObject (no body) only
#: its status. Anything else (AccessDenied, throttling, a missing bucket) is no answer about the object.
_S3_ABSENT = frozenset({"NoSuchKey", "404", "NotFound"})


def s3_absent(error: ClientError) -> bool:
    """True when ``error`` says the object does not exist, and nothing else."""
    return error.response.get("Error", {}).get("Code", "") in _S3_ABSENT


#: Why DynamoDB cancels a transaction that lost to another writer: a condition that no longer holds, or
#: a concurrent transaction on the same item. Others (throttling, validation, item size) are faults.
_LOST_RACE = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


def lost_race(error: ClientError) -> bool:
    """True when a cancelled transaction lost to a concurrent writer (read again and decide again);
    False for any other cancellation, which the caller must raise rather than retry or drop."""
    reasons = error.response.get("CancellationReasons", [])
    codes = {reason.get("Code", "None") for reason in reasons} - {"None"}
    return bool(codes) and codes <= _LOST_RACE
