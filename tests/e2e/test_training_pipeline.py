"""The training pipeline, executed from the synthesized definition on the embedded AWS.

One platform for the module; the cases run in order and build on each other's registry state:
a job that fails (Catch path) -> a model that passes and is auto-approved (through a throttled
SageMaker call the Retry absorbs) -> a challenger that loses to the champion (review requested) ->
a model that fails a post-training test (nothing registered). Curated data is written directly and
ingested into the feature views with the library (``mlcycle.features.ingest``), so the runs do not wait
on prepare-data and the ingest function; BuildTrainingSet joins the features point in time.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from mlcycle.application import cycle
from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.features import FeatureStore, ingest_rows
from mlcycle.local.session import LocalPlatform, local_platform
from mlcycle.training_sets import InsufficientDataError

pytestmark = pytest.mark.e2e

CURATED_KEY = "curated/churn/ingest_date=2026-01-31/{name}.parquet"


class Run:
    """One execution's outcome: its ARN, status, output or error, and the states it entered."""

    def __init__(self, sfn: Any, arn: str) -> None:
        self.arn, self.name = arn, arn.rsplit(":", 1)[1]
        described = sfn.describe_execution(executionArn=arn)
        self.status: str = described["status"]
        self.output: dict[str, Any] = json.loads(described.get("output") or "{}")
        self.history: list[dict[str, Any]] = sfn.get_execution_history(executionArn=arn, maxResults=1000)[
            "events"
        ]
        failed = [
            e["executionFailedEventDetails"] for e in self.history if "executionFailedEventDetails" in e
        ]
        self.error = failed[0].get("error", "") if failed else ""
        self.cause = failed[0].get("cause", "") if failed else ""

    @property
    def states(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e
        ]


@pytest.fixture(scope="module")
def local(settings: Settings, assembly: Path) -> Iterator[LocalPlatform]:
    with local_platform(settings, assembly) as platform:
        yield platform


@pytest.fixture(scope="module")
def bus_events(local: LocalPlatform, settings: Settings) -> Any:
    """An SQS queue that receives every event we put on our bus (a rule attached by the test)."""
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


def _curate(
    local: LocalPlatform, settings: Settings, frame: pd.DataFrame, name: str, *, features: bool = True
) -> list[str]:
    """Curated Parquet for ``frame`` (and, unless told not to, its rows in the feature views, batch
    ``name``); the keys written, for cleanup."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    key = CURATED_KEY.format(name=name)
    local.clients.s3.put_object(Bucket=local.platform.curated_bucket, Key=key, Body=buffer.getvalue())
    if not features:
        return [key]
    store = FeatureStore.from_settings(
        settings, features_bucket=local.platform.features_bucket, s3=local.clients.s3
    )
    ingested = ingest_rows(store, settings.problem.dataset.name, frame, batch_id=name)
    return [key] + [
        f"{v.view}/event_date={day}/{name}.parquet" for v in ingested.views for day in v.partitions
    ]


def _delete(local: LocalPlatform, keys: list[str]) -> None:
    curated, features = keys[0], keys[1:]
    local.clients.s3.delete_object(Bucket=local.platform.curated_bucket, Key=curated)
    for key in features:
        local.clients.s3.delete_object(Bucket=local.platform.features_bucket, Key=key)


def _run(local: LocalPlatform, timeout: float = 300) -> Run:
    sfn = local.clients.sfn
    arn = cycle.start_training(sfn, local.platform, {"poll_seconds": 1})
    deadline = time.monotonic() + timeout
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"execution {arn} still running after {timeout}s"
        time.sleep(0.5)
    return Run(sfn, arn)


def _packages(local: LocalPlatform, settings: Settings) -> list[dict[str, Any]]:
    listed = local.clients.sagemaker.list_model_packages(ModelPackageGroupName=settings.model_package_group)
    return list(listed["ModelPackageSummaryList"])


def _json(local: LocalPlatform, uri: str) -> dict[str, Any]:
    bucket, key = split_s3_uri(uri)
    loaded: dict[str, Any] = json.loads(local.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return loaded


def _failure_report(local: LocalPlatform, run: Run) -> dict[str, Any]:
    return _json(local, f"s3://{local.platform.artifacts_bucket}/failures/{run.name}/report.json")


def _of_type(events: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["detail-type"] == detail_type]


def _set_champion_metric(local: LocalPlatform, settings: Settings, value: float) -> None:
    sagemaker = local.clients.sagemaker
    champion = next(p for p in _packages(local, settings) if p["ModelApprovalStatus"] == "Approved")
    described = sagemaker.describe_model_package(ModelPackageName=champion["ModelPackageArn"])
    metadata = described["CustomerMetadataProperties"] | {"metric:roc_auc": f"{value:.6g}"}
    sagemaker.update_model_package(
        ModelPackageArn=champion["ModelPackageArn"], CustomerMetadataProperties=metadata
    )


def test_curated_data_without_features_fails_the_build_clearly(
    local: LocalPlatform, settings: Settings, bus_events: Any
) -> None:
    # GIVEN curated data the feature views never ingested (the offline store lacks it)
    keys = _curate(local, settings, churn.generate(400, seed=5), "unfeatured", features=False)
    # WHEN the pipeline runs
    run = _run(local)
    _delete(local, keys)
    # THEN BuildTrainingSet refuses with the reason, through the failure path, and trains nothing
    assert run.status == "FAILED", run.output
    assert InsufficientDataError.__name__ in run.error + run.cause
    assert "no feature values" in run.cause and "customer_profile" in run.cause
    assert "TrainModel" not in run.states and run.states[-2:] == ["ReportFailure", "PipelineFailed"]
    assert [e["detail"]["execution_arn"] for e in _of_type(bus_events(), "TrainingFailed")] == [run.arn]
    assert _packages(local, settings) == []


def test_failing_job_is_caught_reported_and_announced(
    local: LocalPlatform, settings: Settings, bus_events: Any
) -> None:
    # GIVEN curated data with a single class, which the pre-training tests refuse
    keys = _curate(local, settings, churn.generate(400, seed=3).assign(churned=0), "oneclass")
    # WHEN the pipeline runs
    run = _run(local)
    _delete(local, keys)
    # THEN the job fails, the Catch path reports it, and the execution fails with the job's reason
    assert run.status == "FAILED" and run.error == "TrainingJobFailed"
    assert "label_balance" in run.cause and "single class" in run.cause
    assert run.states[-2:] == ["ReportFailure", "PipelineFailed"]
    report = _failure_report(local, run)
    assert report["error"] == "TrainingJobFailed" and "single class" in report["cause"]
    failed = _of_type(bus_events(), "TrainingFailed")
    assert [e["detail"]["execution_arn"] for e in failed] == [run.arn]
    assert failed[0]["detail"]["report_uri"].endswith(f"failures/{run.name}/report.json")
    assert _packages(local, settings) == []


def test_passing_model_is_registered_and_auto_approved_through_a_throttle(
    local: LocalPlatform, settings: Settings, bus_events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.sagemaker.models import SageMakerModelBackend

    # GIVEN good curated data, and a SageMaker that throttles the first DescribeProcessingJob
    _curate(local, settings, churn.generate(3000, seed=11), "good")
    original, throttled = SageMakerModelBackend.describe_processing_job, list[bool]()

    def describe_once_throttled(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not throttled:
            throttled.append(True)
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SageMakerModelBackend, "describe_processing_job", describe_once_throttled)
    # WHEN the pipeline runs
    started = time.monotonic()
    run = _run(local)
    wall = time.monotonic() - started
    # THEN the Retry absorbed the throttle, and every stage ran
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    print(f"pipeline wall time: {wall:.1f}s")
    retried = [e for e in run.history if e["type"] == "TaskFailed"]
    assert (
        throttled and len(retried) == 1 and "Rate exceeded" in retried[0]["taskFailedEventDetails"]["cause"]
    )
    for state in ("ValidateRun", "BuildTrainingSet", "TrainModel", "EvaluateModel", "CheckModelTests"):
        assert state in run.states
    assert run.states[-2:] == ["ApprovalDecision", "Approved"]
    # AND the registry holds an approved version with its reports, baselines and lineage
    registration = run.output["registration"]
    assert registration["approval_status"] == "Approved" and registration["version"] == 1
    package = local.clients.sagemaker.describe_model_package(
        ModelPackageName=registration["model_package_arn"]
    )
    quality = package["ModelMetrics"]["ModelQuality"]
    evaluation = _json(local, quality["Statistics"]["S3Uri"])
    assert evaluation["model_tests"]["passed"] and evaluation["metrics"]["roc_auc"] > 0.75
    assert _json(local, quality["Constraints"]["S3Uri"])["stage"] == "post_training"
    baseline_uri = package["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]["S3Uri"]
    assert set(_json(local, baseline_uri)["features"]) == set(settings.problem.features)
    metadata = package["CustomerMetadataProperties"]
    assert metadata["training_set_id"] == run.name and metadata["execution_arn"] == run.arn
    # AND the training set was joined point in time from the feature views, its timestamps kept
    manifest = _json(local, metadata["training_set_manifest"])
    views = {v["name"]: v for v in manifest["feature_views"]}
    assert set(views) == {v.name for v in settings.feature_views}
    assert all(v["offline_uri"].startswith(f"s3://{local.platform.features_bucket}/") for v in views.values())
    assert manifest["rows_without_features"] == 0
    bucket, key = split_s3_uri(run.output["training_set"]["train_uri"])
    train = pd.read_parquet(
        io.BytesIO(local.clients.s3.get_object(Bucket=bucket, Key=f"{key}data.parquet")["Body"].read())
    )
    suffix = settings.model_tests.feature_time_suffix
    assert {f"{name}{suffix}" for name in views} <= set(train.columns)
    assert set(settings.problem.features) <= set(train.columns)
    assert metadata["training_set_manifest"].endswith(f"training-sets/{run.name}/manifest.json")
    assert metadata["code_version"].startswith("s3://") and "max_iter" in metadata["parameters"]
    assert metadata["model_tests"].startswith("post_training tests: all")
    types = [e["detail-type"] for e in bus_events()]  # the approval also deploys it (ModelDeployed)
    assert "ModelRegistered" in types and "ModelReviewRequested" not in types


def test_challenger_that_does_not_beat_the_champion_waits_for_review(
    local: LocalPlatform, settings: Settings, bus_events: Any
) -> None:
    # GIVEN a champion slightly better than what the same data trains again (within the tolerance)
    champion = local.clients.sagemaker.describe_model_package(
        ModelPackageName=_packages(local, settings)[0]["ModelPackageArn"]
    )
    _set_champion_metric(
        local, settings, float(champion["CustomerMetadataProperties"]["metric:roc_auc"]) + 0.01
    )
    # WHEN the pipeline runs
    run = _run(local)
    # THEN the challenger passes its tests but waits for a human, who is asked to review it
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.output["registration"]["approval_status"] == "PendingManualApproval"
    assert run.states[-1] == "AwaitingReview"
    review = _of_type(bus_events(), "ModelReviewRequested")
    assert [e["detail"]["version"] for e in review] == [2]


def test_model_failing_a_post_training_test_is_never_registered(
    local: LocalPlatform, settings: Settings, bus_events: Any
) -> None:
    # GIVEN a champion far better than any challenger from this data
    _set_champion_metric(local, settings, 0.99)
    # WHEN the pipeline runs
    run = _run(local)
    # THEN the tests gate stops it with the failed check, reported in S3 and on the bus
    assert run.status == "FAILED" and run.error == "ModelTestsFailed"
    assert "vs_champion:roc_auc" in run.cause
    assert "RegisterModel" not in run.states and "ModelTestsFailed" in run.states
    assert "vs_champion:roc_auc" in _failure_report(local, run)["cause"]
    assert [e["detail"]["error"] for e in _of_type(bus_events(), "TrainingFailed")] == ["ModelTestsFailed"]
    assert len(_packages(local, settings)) == 2
