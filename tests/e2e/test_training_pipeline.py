"""The ML cycle end to end on the embedded AWS, from the synthesized CDK app: data to features, training,
registry, deployment and serving.

One platform for the module; the cases run in order and build on each other's state:

1. the feature flow, on the platform's first data: upload -> prepare-data -> curated -> DatasetValidated
   on the bus -> ingest-features Lambda -> offline partitions + Glue + online values -> a point-in-time
   training frame read back through Arrow's S3 filesystem;
2. the cycle `make demo` runs, once (the ``cycle_run`` fixture; the next cases assert on it): the bundled
   upload -> curated Parquet and quarantine -> features -> the training state machine (through a
   throttled SageMaker call the Retry absorbs) -> local training job -> model.tar.gz -> model package,
   auto-approved -> the approval event deploys it -> InvokeEndpoint returns real predictions, captured;
3. a challenger that loses to the champion (review requested);
4. a model that fails a post-training test (nothing registered).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from mlcycle.application import cycle
from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.features import FeatureStore
from mlcycle.local.sagemaker import endpoints
from mlcycle.local.session import LocalPlatform
from tests.e2e.helpers import (
    Run,
    clear_curated,
    failure_report,
    latest_training,
    of_type,
    packages,
    run_training,
    s3_json,
)

pytestmark = pytest.mark.e2e

#: How follow_execution reports a state: "  12.3s  TrainModel" (once, when first entered).
STATE_LINE = re.compile(r"^\s+[\d.]+s\s+(\S+)$")


def test_upload_to_point_in_time_training_frame(
    local: LocalPlatform, settings: Settings, tmp_path: Path
) -> None:
    c, p = local.clients, local.platform
    session = boto3.session.Session(region_name=settings.region)
    clients: dict[str, Any] = {
        n: session.client(n, endpoint_url=local.aws.endpoint_url)  # type: ignore[call-overload]
        for n in ("s3", "glue", "dynamodb")
    }
    # GIVEN a small upload of the example dataset in the landing bucket
    rows = churn.generate(200, seed=5)
    upload = tmp_path / "features.csv"
    rows.to_csv(upload, index=False)
    cycle.upload(c, p, upload, "churn", lambda _m: None)
    # WHEN prepare-data curates it and its DatasetValidated event reaches the ingest function
    store = FeatureStore.from_settings(
        settings,
        features_bucket=p.features_bucket,
        online_table=p.online_table,
        glue_database=local.stack.outputs.get("GlueDatabaseName") or settings.prefix.replace("-", "_"),
        **{k: clients[k] for k in ("s3", "glue", "dynamodb")},
    )
    ids = list(rows["customer_id"][:5])

    def online_ready() -> list[pd.DataFrame]:  # a list: wait_for tests truthiness, a frame has none
        frame = store.get_online_features(ids)
        ready = frame["tenure_months"].notna().all() and frame["monthly_charges"].notna().all()
        return [frame] if ready else []

    (online,) = cycle.wait_for("online features from the ingest function", online_ready, timeout=60)
    # THEN the online store holds each customer's values
    assert online["tenure_months"].tolist() == rows["tenure_months"][:5].tolist()
    # AND the offline partitions are cataloged in Glue per event date
    for view in ("customer_profile", "customer_activity"):
        dates = store.offline.partitions(view)
        assert dates and dates == sorted({f"{t:%Y-%m-%d}" for t in rows["event_time"]})
    # AND the ingest function left each view's snapshot current (read back through Arrow's S3 client)
    for view in store.views:
        snapshot = store.offline.snapshot(view, store.contract(view))
        assert snapshot is not None and snapshot.table.num_rows == 200
    # AND a point-in-time training frame sees each customer's row from its event time on, never before
    entity = pd.DataFrame(
        {
            "customer_id": [*ids, *ids],
            "event_timestamp": [*(rows["event_time"][:5] - timedelta(seconds=1)), *rows["event_time"][:5]],
            "churned": [*rows["churned"][:5], *rows["churned"][:5]],
        }
    )
    frame = store.get_historical_features(entity).to_pandas()
    assert frame["tenure_months"][:5].isna().all()
    assert frame["tenure_months"][5:].tolist() == rows["tenure_months"][:5].tolist()
    assert frame["payment_method"][5:].tolist() == rows["payment_method"][:5].tolist()


@dataclass(frozen=True)
class Cycle:
    """What the cycle's run left: its progress messages, the curated keys, the pipeline's output and its
    execution, whether SageMaker throttled it, and the events on the bus."""

    log: list[str]
    curated_keys: list[str]
    output: dict[str, Any]
    run: Run
    throttled: list[bool]
    events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def cycle_run(
    local: LocalPlatform, settings: Settings, bus_events: Callable[[], list[dict[str, Any]]]
) -> Cycle:
    """The bundled upload, curated and ingested, then one training pipeline run whose first
    DescribeProcessingJob SageMaker throttles; it registers (and, approved, deploys) version 1."""
    from moto.core.exceptions import JsonRESTError
    from moto.sagemaker.models import SageMakerModelBackend

    c, p, log = local.clients, local.platform, list[str]()
    # GIVEN the bundled upload in the landing bucket, and no other curated data (as in `make demo`)
    clear_curated(local)
    upload_id = cycle.upload(c, p, cycle.bundled_dataset(), "churn", log.append)
    keys = cycle.wait_for_curated(c, p, "churn", upload_id, log.append)
    # AND the ingest function fills the feature views the training set is joined from
    cycle.wait_for_features(c.s3, p, settings, keys, log.append)
    original, throttled = SageMakerModelBackend.describe_processing_job, list[bool]()

    def describe_once_throttled(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not throttled:
            throttled.append(True)
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        return original(self, *args, **kwargs)

    # WHEN the training pipeline runs, and SageMaker throttles its first DescribeProcessingJob
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SageMakerModelBackend, "describe_processing_job", describe_once_throttled)
        started = time.monotonic()
        output = cycle.run_training(c, p, log.append)
        print(f"pipeline wall time: {time.monotonic() - started:.1f}s")
    return Cycle(log, keys, output, latest_training(local), throttled, bus_events())


def test_upload_is_curated_and_its_broken_rows_quarantined(cycle_run: Cycle, local: LocalPlatform) -> None:
    # THEN prepare-data curates the good rows and quarantines the broken ones
    keys = cycle_run.curated_keys
    assert len(keys) == 1 and keys[0].endswith(".parquet")
    c, p = local.clients, local.platform
    quarantined = c.s3.list_objects_v2(Bucket=p.curated_bucket, Prefix="quarantine/churn/")["Contents"]
    assert {Path(o["Key"]).name for o in quarantined} == {"rows.csv", "report.json"}


def test_passing_model_is_registered_and_auto_approved_through_a_throttle(
    cycle_run: Cycle, local: LocalPlatform, settings: Settings
) -> None:
    run, output = cycle_run.run, cycle_run.output
    # THEN every state ran, as reported while it ran, and the Retry absorbed the throttle
    assert {"BuildTrainingSet", "TrainModel", "DescribeTrainingJob", "RegisterModel"} <= {
        found.group(1) for line in cycle_run.log if (found := STATE_LINE.match(line))
    }
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    retried = [e for e in run.history if e["type"] == "TaskFailed"]
    assert (
        cycle_run.throttled
        and len(retried) == 1
        and "Rate exceeded" in retried[0]["taskFailedEventDetails"]["cause"]
    )
    for state in ("ValidateRun", "BuildTrainingSet", "TrainModel", "EvaluateModel", "CheckModelTests"):
        assert state in run.states
    assert run.states[-2:] == ["ApprovalDecision", "Approved"]
    # AND the registry holds one approved version with its reports, baselines and lineage
    registration = output["registration"]
    assert registration["approval_status"] == "Approved" and registration["version"] == 1
    assert registration["value"] > 0.75
    sagemaker = local.clients.sagemaker
    package = sagemaker.describe_model_package(ModelPackageName=registration["model_package_arn"])
    quality = package["ModelMetrics"]["ModelQuality"]
    evaluation = s3_json(local, quality["Statistics"]["S3Uri"])
    assert evaluation["model_tests"]["passed"] and evaluation["metrics"]["roc_auc"] > 0.75
    assert s3_json(local, quality["Constraints"]["S3Uri"])["stage"] == "post_training"
    baseline_uri = package["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]["S3Uri"]
    assert set(s3_json(local, baseline_uri)["features"]) == set(settings.problem.features)
    metadata = package["CustomerMetadataProperties"]
    assert metadata["training_set_id"] == run.name == output["training_set"]["training_set_id"]
    assert metadata["execution_arn"] == run.arn
    # AND the training set was joined point in time from the feature views, its timestamps kept
    manifest = s3_json(local, metadata["training_set_manifest"])
    views = {v["name"]: v for v in manifest["feature_views"]}
    assert set(views) == {v.name for v in settings.feature_views}
    assert all(v["offline_uri"].startswith(f"s3://{local.platform.features_bucket}/") for v in views.values())
    assert manifest["rows_without_features"] == 0
    bucket, key = split_s3_uri(output["training_set"]["train_uri"])
    train = pd.read_parquet(
        io.BytesIO(local.clients.s3.get_object(Bucket=bucket, Key=f"{key}data.parquet")["Body"].read())
    )
    suffix = settings.model_tests.feature_time_suffix
    assert {f"{name}{suffix}" for name in views} <= set(train.columns)
    assert set(settings.problem.features) <= set(train.columns)
    assert metadata["training_set_manifest"].endswith(f"training-sets/{run.name}/manifest.json")
    assert metadata["code_version"].startswith("s3://") and "max_iter" in metadata["parameters"]
    assert metadata["model_tests"].startswith("post_training tests: all")
    # AND the model archive holds the model, its schema and the inference code
    model_url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, key = split_s3_uri(model_url)
    body = local.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert {"model.joblib", "schema.json", "code/inference.py"} <= set(tar.getnames())
    types = [e["detail-type"] for e in cycle_run.events]  # the approval also deploys it (ModelDeployed)
    assert "ModelRegistered" in types and "ModelReviewRequested" not in types


def test_approved_model_is_deployed_and_answers_with_captured_predictions(
    cycle_run: Cycle, local: LocalPlatform, settings: Settings
) -> None:
    c, p = local.clients, local.platform
    # THEN the approval event deploys it; the endpoint answers with real predictions
    cycle.wait_for_endpoint(c, settings, lambda _m: None)
    rows = churn.generate(20, seed=77)
    answer = cycle.invoke(c, settings, rows)
    assert len(answer["predictions"]) == 20 and set(answer["predictions"]) <= {0, 1}
    assert all(abs(sum(pr) - 1) < 1e-6 for pr in answer["probabilities"])
    scores = cycle.score_holdout(c, settings, lambda _m: None, rows=300)
    assert scores["accuracy"] > 0.7
    # AND every request was captured in SageMaker's capture layout, for the monitors
    endpoints.flush_capture()
    found = c.s3.list_objects_v2(
        Bucket=p.monitoring_bucket, Prefix=f"capture/{settings.endpoint_name}/AllTraffic/"
    )
    records = [
        json.loads(line)
        for obj in found["Contents"]
        for line in c.s3.get_object(Bucket=p.monitoring_bucket, Key=obj["Key"])["Body"].read().splitlines()
    ]
    assert len(records) == 2  # the 20-row and the 300-row request
    assert {r["captureData"]["endpointInput"]["observedContentType"] for r in records} == {"text/csv"}
    assert all(r["captureData"]["endpointOutput"]["mode"] == "OUTPUT" for r in records)


def _set_champion_metric(local: LocalPlatform, settings: Settings, value: float) -> None:
    sagemaker = local.clients.sagemaker
    champion = next(p for p in packages(local, settings) if p["ModelApprovalStatus"] == "Approved")
    described = sagemaker.describe_model_package(ModelPackageName=champion["ModelPackageArn"])
    metadata = described["CustomerMetadataProperties"] | {"metric:roc_auc": f"{value:.6g}"}
    sagemaker.update_model_package(
        ModelPackageArn=champion["ModelPackageArn"], CustomerMetadataProperties=metadata
    )


def test_challenger_that_does_not_beat_the_champion_waits_for_review(
    cycle_run: Cycle, local: LocalPlatform, settings: Settings, bus_events: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN a champion slightly better than what the same data trains again (within the tolerance)
    champion = local.clients.sagemaker.describe_model_package(
        ModelPackageName=packages(local, settings)[0]["ModelPackageArn"]
    )
    _set_champion_metric(
        local, settings, float(champion["CustomerMetadataProperties"]["metric:roc_auc"]) + 0.01
    )
    # WHEN the pipeline runs
    run = run_training(local)
    # THEN the challenger passes its tests but waits for a human, who is asked to review it
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.output["registration"]["approval_status"] == "PendingManualApproval"
    assert run.states[-1] == "AwaitingReview"
    review = of_type(bus_events(), "ModelReviewRequested")
    assert [e["detail"]["version"] for e in review] == [2]


def test_model_failing_a_post_training_test_is_never_registered(
    cycle_run: Cycle, local: LocalPlatform, settings: Settings, bus_events: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN a champion far better than any challenger from this data
    _set_champion_metric(local, settings, 0.99)
    bus_events()  # what earlier cases announced
    # WHEN the pipeline runs
    run = run_training(local)
    # THEN the tests gate stops it with the failed check, reported in S3 and on the bus
    assert run.status == "FAILED" and run.error == "ModelTestsFailed"
    assert "vs_champion:roc_auc" in run.cause
    assert "RegisterModel" not in run.states and "ModelTestsFailed" in run.states
    assert "vs_champion:roc_auc" in failure_report(local, run)["cause"]
    assert [e["detail"]["error"] for e in of_type(bus_events(), "TrainingFailed")] == ["ModelTestsFailed"]
    assert len(packages(local, settings)) == 2
