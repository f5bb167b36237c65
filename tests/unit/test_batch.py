"""Batch predictions' domain: the CreateTransformJob request, the job's name, finding a job again, waiting."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlcycle import batch
from mlcycle.batch import BatchOptions, InputListing
from mlcycle.config import Settings

PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlcycle-dev-models/3"
LISTING = InputListing("s3://data/scoring/", objects=2, bytes=1234, fingerprint="f" * 64)
#: SageMaker's TransformJobName pattern and length.
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def test_the_request_transforms_a_prefix_by_line_in_multi_record_batches(settings: Settings) -> None:
    options = BatchOptions(max_payload_mb=4, join_input=True, max_concurrent_transforms=2)
    request = batch.transform_request(
        settings,
        name="job",
        model_name="model",
        input_uri="s3://data/scoring/",
        output_uri="s3://out/scored/",
        options=options,
    )
    assert request["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/scoring/"}},
        "ContentType": "text/csv",
        "SplitType": "Line",
        "CompressionType": "None",
    }
    assert (request["BatchStrategy"], request["MaxPayloadInMB"], request["MaxConcurrentTransforms"]) == (
        "MultiRecord",
        4,
        2,
    )
    # the answers come back as the input came in (CSV in, CSV out), one line per record, joined to it
    assert request["TransformOutput"] == {
        "S3OutputPath": "s3://out/scored",
        "Accept": "text/csv",
        "AssembleWith": "Line",
    }
    assert request["DataProcessing"] == {"JoinSource": "Input"}
    assert (request["TransformJobName"], request["ModelName"]) == ("job", "model")
    assert request["TransformResources"]["InstanceType"] == settings.instances.processing


def test_without_join_or_concurrency_the_request_leaves_them_to_the_container(settings: Settings) -> None:
    options = BatchOptions(content_type="application/jsonlines")
    request = batch.transform_request(
        settings, name="j", model_name="m", input_uri="s3://a/b", output_uri="s3://a/c", options=options
    )
    assert request["DataProcessing"] == {"JoinSource": "None"}
    assert "MaxConcurrentTransforms" not in request
    assert request["TransformOutput"]["Accept"] == "application/jsonlines"
    assert request["MaxPayloadInMB"] == 6


@pytest.mark.parametrize("payload", [0, 101])
def test_payloads_stay_within_sagemakers_limit(payload: int) -> None:
    with pytest.raises(ValueError, match="max_payload_mb"):
        BatchOptions(max_payload_mb=payload)


def test_the_job_name_is_the_request_s_digest(settings: Settings) -> None:
    options = BatchOptions()
    name = batch.job_name(settings, PACKAGE, LISTING, None, options=options)
    assert name == batch.job_name(settings, PACKAGE, LISTING, None, options=options)
    assert name.startswith("mlcycle-dev-batch-v3-") and NAME.match(name)
    different = {
        batch.job_name(settings, PACKAGE.replace("/3", "/4"), LISTING, None, options=options),
        batch.job_name(
            settings, PACKAGE, InputListing("s3://data/scoring/", 2, 1234, "e" * 64), None, options=options
        ),
        batch.job_name(settings, PACKAGE, LISTING, "s3://out/", options=options),
        batch.job_name(settings, PACKAGE, LISTING, None, options=BatchOptions(join_input=True)),
    }
    assert name not in different and len(different) == 4
    assert batch.job_name(settings, PACKAGE, LISTING, None, options=options, attempt=2) == f"{name}-2"
    long = settings.model_copy(update={"project": "a" * 21, "stage": "b" * 10})
    assert len(batch.job_name(long, PACKAGE, LISTING, None, options=options, attempt=12)) <= 63


class FakeSageMaker:
    """Transform jobs by name, with the statuses a test gives them."""

    def __init__(self, statuses: dict[str, list[str]]) -> None:
        self.statuses = statuses
        self.created: list[dict[str, Any]] = []

    def describe_transform_job(self, TransformJobName: str) -> dict[str, Any]:
        if TransformJobName not in self.statuses:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, "Describe")
        sequence = self.statuses[TransformJobName]
        status = sequence.pop(0) if len(sequence) > 1 else sequence[0]
        return {
            "TransformJobName": TransformJobName,
            "TransformJobStatus": status,
            "FailureReason": "bad line",
        }

    def create_transform_job(self, **request: Any) -> None:
        self.created.append(request)
        self.statuses[request["TransformJobName"]] = ["InProgress"]


def _names(attempt: int) -> str:
    return "job" if attempt == 1 else f"job-{attempt}"


def test_start_creates_the_job_or_finds_it_running_or_done() -> None:
    fake = FakeSageMaker({})
    started = batch.start(fake, _names, lambda name: {"TransformJobName": name})  # type: ignore[arg-type]
    assert started == batch.Started("job", True, "InProgress") and len(fake.created) == 1
    for status in ("InProgress", "Completed"):
        fake = FakeSageMaker({"job": [status]})
        found = batch.start(fake, _names, lambda name: {"TransformJobName": name})  # type: ignore[arg-type]
        assert found == batch.Started("job", False, status) and not fake.created


def test_a_failed_or_stopped_attempt_is_followed_by_the_next_number() -> None:
    fake = FakeSageMaker({"job": ["Failed"], "job-2": ["Stopped"]})
    started = batch.start(fake, _names, lambda name: {"TransformJobName": name})  # type: ignore[arg-type]
    assert started.name == "job-3" and started.created


class FakeS3:
    def __init__(self, keys: list[list[str]]) -> None:
        self.keys = keys

    def get_paginator(self, _operation: str) -> Any:
        keys = self.keys.pop(0) if len(self.keys) > 1 else self.keys[0]
        return type(
            "Paginator", (), {"paginate": lambda _self, **_: [{"Contents": [{"Key": k} for k in keys]}]}
        )()


def test_wait_reports_progress_until_the_job_ends() -> None:
    fake = FakeSageMaker({"job": ["InProgress", "InProgress", "Completed"]})
    s3 = FakeS3([[], ["out/a.csv.out", "out/readme"], ["out/a.csv.out", "out/b.csv.out"]])
    seen: list[batch.Progress] = []
    ticks = iter(range(100))
    described = batch.wait(
        fake,  # type: ignore[arg-type]
        "job",
        s3=s3,  # type: ignore[arg-type]
        output_uri="s3://bucket/out/",
        total=2,
        on_progress=seen.append,
        sleep=lambda _: None,
        clock=lambda: float(next(ticks)),
    )
    assert described["TransformJobStatus"] == "Completed"
    assert [(p.status, p.done, p.total) for p in seen] == [
        ("InProgress", 0, 2),
        ("InProgress", 1, 2),
        ("Completed", 2, 2),
    ]
    assert batch.failure({"TransformJobName": "j", "TransformJobStatus": "Failed", "FailureReason": "x"}) == (
        "transform job j failed: x"
    )


def test_wait_gives_up_after_its_timeout() -> None:
    fake = FakeSageMaker({"job": ["InProgress"]})
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(TimeoutError, match="still InProgress"):
        batch.wait(
            fake,  # type: ignore[arg-type]
            "job",
            s3=FakeS3([[]]),  # type: ignore[arg-type]
            output_uri="s3://b/o",
            total=1,
            timeout=25,
            sleep=lambda _: None,
            clock=lambda: float(next(ticks)),
        )


def test_uris_are_checked() -> None:
    assert batch.split_uri("s3://bucket/a/b.csv") == ("bucket", "a/b.csv")
    for bad in ("bucket/a", "s3:///a", "/tmp/x"):
        with pytest.raises(ValueError, match="not an s3:// URI"):
            batch.split_uri(bad)
    assert batch.workspace("art", "job") == (
        "s3://art/batch-transform/job/input/",
        "s3://art/batch-transform/job/output/",
    )


def test_the_champion_by_default_and_a_clear_error_without_one(moto_aws: None, settings: Settings) -> None:
    import boto3

    sagemaker = boto3.client("sagemaker", region_name=settings.region)
    group = settings.model_package_group
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    with pytest.raises(batch.NoApprovedModelError, match="no approved model"):
        batch.model_package(sagemaker, settings)
    spec = {
        "Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    for status in ("Approved", "Rejected"):
        sagemaker.create_model_package(
            ModelPackageGroupName=group, ModelApprovalStatus=status, InferenceSpecification=spec
        )
    assert batch.model_package(sagemaker, settings)["ModelPackageVersion"] == 1
    assert batch.model_package(sagemaker, settings, "2")["ModelPackageVersion"] == 2
