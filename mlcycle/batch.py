"""Batch predictions: a SageMaker batch transform job over S3 objects with a registered model version.

The request is the one SageMaker runs large offline scoring with: every object under an S3 prefix, split
by line (``SplitType: Line``), records packed into mini-batches up to ``MaxPayloadInMB``
(``BatchStrategy: MultiRecord``), the answers assembled by line into ``{output}/{object}.out``, each line
joined to its input record when asked (``DataProcessing.JoinSource: Input``). The model is the version's
SageMaker model, the one deploying it creates (same name), so a version scores the same online and in
batch.

The job's name is derived from what it does (the version, the input's listing with ETags, the output and
the options), so running the same request again finds the job already running or done instead of
starting a second one; a new attempt is numbered only after a failed or stopped one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from mlcycle import deployment, registry
from mlcycle.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker.type_defs import DescribeTransformJobResponseTypeDef

CSV = "text/csv"
JSONLINES = "application/jsonlines"
#: Where local inputs and outputs go in the artifacts bucket: ``{WORKSPACE}/{job}/input|output/``.
WORKSPACE = "batch-transform"
#: SageMaker's limits: a payload of at most 100 MB, a job name of at most 63 characters.
MAX_PAYLOAD_MB = 100
NAME_LIMIT = 63
TERMINAL = ("Completed", "Failed", "Stopped")
#: A job in one of these can be waited on again; after the others a new attempt starts.
REUSABLE = ("InProgress", "Stopping", "Completed")
_ATTEMPTS = 50


class NoApprovedModelError(LookupError):
    """The model package group has no approved version to predict with."""


class OutputsUnreadableError(LookupError):
    """The job's answers cannot be listed: never mistaken for a job that answered nothing."""


class MissingInputError(FileNotFoundError):
    """No object lies under the input prefix."""


@dataclass(frozen=True)
class BatchOptions:
    """What a batch prediction asks of the job besides its data."""

    content_type: str = CSV
    #: The answers' type; ``None``: the same as the input (CSV in, CSV out), which joins line by line.
    accept: str | None = None
    join_input: bool = False
    max_payload_mb: int = 6
    #: Requests in flight at once per instance; ``None``: what the model server says it takes.
    max_concurrent_transforms: int | None = None
    instance_count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.max_payload_mb <= MAX_PAYLOAD_MB:
            raise ValueError(f"max_payload_mb must be 1 to {MAX_PAYLOAD_MB}, not {self.max_payload_mb}")

    @property
    def answer_type(self) -> str:
        return self.accept or self.content_type


@dataclass(frozen=True)
class InputListing:
    """The objects under an input prefix: how many, their size, and a digest of their keys and ETags."""

    uri: str
    objects: int
    bytes: int
    fingerprint: str
    #: One object's name (the first listed), whose suffix tells the input's type.
    first: str = ""


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def list_input(s3: S3Client, uri: str) -> InputListing:
    """The input as the job will see it; raises :class:`MissingInputError` when nothing lies there."""
    bucket, prefix = split_uri(uri)
    digest, objects, size, first = hashlib.sha256(), 0, 0, ""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                if entry["Key"].endswith("/"):
                    continue  # a folder marker is no object to transform
                digest.update(f"{entry['Key']}\0{entry.get('ETag', '')}\n".encode())
                objects, size = objects + 1, size + int(entry.get("Size", 0))
                first = first or entry["Key"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "NoSuchBucket":
            raise MissingInputError(f"no bucket {bucket} (input {uri})") from None
        raise
    if not objects:
        raise MissingInputError(f"no objects under {uri}: nothing to predict")
    return InputListing(uri, objects, size, digest.hexdigest(), first)


def model_package(
    sagemaker: SageMakerClient, settings: Settings, version: str | None = None
) -> dict[str, Any]:
    """The described package to predict with: the champion (the newest approved version) by default, or
    a version by number or ARN."""
    group = settings.model_package_group
    if version in (None, "", "champion"):
        found = registry.champion(sagemaker, group)
        if found is None:
            raise NoApprovedModelError(
                f"no approved model in {group}: train one (mlcycle train --wait) or approve a version "
                "(mlcycle models approve VERSION), or name one with --model"
            )
        return found
    arn = registry.get_version(sagemaker, group, str(version)).arn
    return dict(sagemaker.describe_model_package(ModelPackageName=arn))


def ensure_model(
    sagemaker: SageMakerClient, settings: Settings, package: Mapping[str, Any], role_arn: str
) -> str:
    """The version's SageMaker model (created if absent, under the name deploying it gives it)."""
    name, _config = deployment.names(settings, package["ModelPackageArn"])
    deployment.ensure_model(sagemaker, name, package, role_arn, settings)
    return name


def job_name(
    settings: Settings,
    package_arn: str,
    listing: InputListing,
    output_uri: str | None,
    *,
    options: BatchOptions,
    attempt: int = 1,
) -> str:
    """``{prefix}-batch-v{version}-{digest}`` (``-{attempt}`` after the first), the digest over what the job
    does: the same request gets the same name."""
    what = {
        "package": package_arn,
        "input": listing.fingerprint,
        "output": output_uri,
        "options": [options.content_type, options.answer_type, options.join_input, options.max_payload_mb],
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]
    version = package_arn.rsplit("/", 1)[-1]
    suffix = f"-v{version}-{digest}" + (f"-{attempt}" if attempt > 1 else "")
    return f"{settings.prefix}-batch"[: NAME_LIMIT - len(suffix)] + suffix


def workspace(artifacts_bucket: str, name: str) -> tuple[str, str]:
    """Input and output prefixes of a job whose data lives in the artifacts bucket (local files)."""
    base = f"s3://{artifacts_bucket}/{WORKSPACE}/{name}"
    return f"{base}/input/", f"{base}/output/"


def transform_request(
    settings: Settings, *, name: str, model_name: str, input_uri: str, output_uri: str, options: BatchOptions
) -> dict[str, Any]:
    """The ``CreateTransformJob`` request."""
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model_name,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": options.max_payload_mb,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": options.content_type,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": output_uri.rstrip("/"),
            "Accept": options.answer_type,
            "AssembleWith": "Line",
        },
        "TransformResources": {
            "InstanceType": settings.instances.processing,  # batch work, sized like the processing jobs
            "InstanceCount": options.instance_count,
        },
        "DataProcessing": {"JoinSource": "Input" if options.join_input else "None"},
        "Tags": [{"Key": "mlcycle:project", "Value": settings.project}],
    }
    if options.max_concurrent_transforms:
        request["MaxConcurrentTransforms"] = options.max_concurrent_transforms
    return request


def describe(sagemaker: SageMakerClient, name: str) -> DescribeTransformJobResponseTypeDef | None:
    try:
        return sagemaker.describe_transform_job(TransformJobName=name)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return None
        raise


@dataclass(frozen=True)
class Started:
    """The job a request maps to; ``created`` is False when it was already running or done."""

    name: str
    created: bool
    status: str


def start(
    sagemaker: SageMakerClient, name_of: Callable[[int], str], request_of: Callable[[str], dict[str, Any]]
) -> Started:
    """Create the job for this request, or find it: the first attempt's name that is free, running or
    done (a failed or stopped attempt is kept, as SageMaker keeps it, and the next number is tried)."""
    for attempt in range(1, _ATTEMPTS + 1):
        name = name_of(attempt)
        found = describe(sagemaker, name)
        if found is None:
            sagemaker.create_transform_job(**request_of(name))
            return Started(name, True, "InProgress")
        if found["TransformJobStatus"] in REUSABLE:
            return Started(name, False, found["TransformJobStatus"])
    raise RuntimeError(f"{_ATTEMPTS} attempts of this batch prediction failed or were stopped")


@dataclass(frozen=True)
class Progress:
    status: str
    elapsed: float
    #: ``.out`` objects written so far (SageMaker uploads each when its input object is done).
    done: int
    total: int


def outputs_written(s3: S3Client, output_uri: str) -> list[str]:
    """Keys of the ``.out`` objects under the job's output path; :class:`OutputsUnreadableError` when
    the caller may not list them (the job's role writes there, not the caller) or the bucket is gone."""
    bucket, prefix = split_uri(output_uri.rstrip("/") + "/")
    try:
        return [
            entry["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for entry in page.get("Contents", [])
            if entry["Key"].endswith(".out")
        ]
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in ("NoSuchBucket", "AccessDenied"):
            raise OutputsUnreadableError(
                f"cannot list the answers under {output_uri} ({code}): they are there or not, this caller "
                "cannot tell; read them with a role that may list the bucket"
            ) from error
        raise


def _finished_so_far(s3: S3Client, output_uri: str) -> int:
    """For progress only: objects written so far, 0 while the caller may not list them (the download
    after the job raises then)."""
    try:
        return len(outputs_written(s3, output_uri))
    except OutputsUnreadableError:
        return 0


def wait(
    sagemaker: SageMakerClient,
    name: str,
    *,
    s3: S3Client,
    output_uri: str,
    total: int,
    on_progress: Callable[[Progress], None] = lambda _: None,
    poll_seconds: float = 5.0,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> DescribeTransformJobResponseTypeDef:
    """Poll the job until it ends, reporting progress after each poll; returns its description."""
    began = clock()
    while True:
        found = sagemaker.describe_transform_job(TransformJobName=name)
        status = found["TransformJobStatus"]
        on_progress(Progress(status, clock() - began, _finished_so_far(s3, output_uri), total))
        if status in TERMINAL:
            return found
        if timeout is not None and clock() - began > timeout:
            raise TimeoutError(f"transform job {name} is still {status} after {timeout:g}s")
        sleep(poll_seconds)


def failure(described: Mapping[str, Any]) -> str:
    """Why a job did not complete, in a sentence."""
    status = described["TransformJobStatus"]
    reason = cast("str", described.get("FailureReason") or "no reason given")
    return f"transform job {described['TransformJobName']} {status.lower()}: {reason}"
