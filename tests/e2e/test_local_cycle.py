"""The first real pipeline, end to end on the embedded AWS, from the synthesized CDK app.

CSV upload -> prepare-data Lambda -> curated Parquet; training state machine -> local training job ->
model.tar.gz -> model package -> approval event -> endpoint -> InvokeEndpoint returns real predictions.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mlcycle.application import cycle
from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.local.sagemaker import endpoints
from mlcycle.local.session import LocalPlatform

pytestmark = pytest.mark.e2e


def _say(messages: list[str]) -> Any:
    return messages.append


def _packages(local: LocalPlatform, settings: Settings) -> list[dict[str, Any]]:
    listed = local.clients.sagemaker.list_model_packages(ModelPackageGroupName=settings.model_package_group)
    packages: list[dict[str, Any]] = listed["ModelPackageSummaryList"]
    return packages


def test_upload_train_register_deploy_invoke(fresh_platform: LocalPlatform, settings: Settings) -> None:
    local, log = fresh_platform, list[str]()
    c, p = local.clients, local.platform
    # GIVEN the bundled upload in the landing bucket
    cycle.upload(c, p, cycle.bundled_dataset(), "churn", _say(log))
    # THEN prepare-data curates the good rows and quarantines the broken ones
    keys = cycle.wait_for_curated(c, p, "churn", _say(log))
    assert len(keys) == 1 and keys[0].endswith(".parquet")
    # AND the ingest function fills the feature views the training set is joined from
    cycle.wait_for_features(c, p, settings, keys, _say(log))
    quarantined = c.s3.list_objects_v2(Bucket=p.curated_bucket, Prefix="quarantine/churn/")["Contents"]
    assert {Path(o["Key"]).name for o in quarantined} == {"rows.csv", "report.json"}

    # WHEN the training pipeline runs
    output = cycle.run_training(c, p, _say(log))
    # THEN every state ran, and the registry holds one approved version with metrics and lineage
    assert {"BuildTrainingSet", "TrainModel", "DescribeTrainingJob", "RegisterModel"} <= {
        line.split()[-1] for line in log if line.startswith("  state")
    }
    registration = output["registration"]
    assert registration["approval_status"] == "Approved" and registration["value"] > 0.75
    package = c.sagemaker.describe_model_package(ModelPackageName=registration["model_package_arn"])
    assert (
        package["CustomerMetadataProperties"]["training_set_id"] == output["training_set"]["training_set_id"]
    )
    model_url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, key = split_s3_uri(model_url)
    with tarfile.open(fileobj=io.BytesIO(c.s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        assert {"model.joblib", "schema.json", "code/inference.py"} <= set(tar.getnames())

    # AND the approval event deploys it; the endpoint answers with real predictions
    cycle.wait_for_endpoint(c, settings, _say(log))
    rows = churn.generate(20, seed=77)
    answer = cycle.invoke(c, settings, rows)
    assert len(answer["predictions"]) == 20 and set(answer["predictions"]) <= {0, 1}
    assert all(abs(sum(pr) - 1) < 1e-6 for pr in answer["probabilities"])
    scores = cycle.score_holdout(c, settings, _say(log), rows=300)
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


def test_failing_training_script_fails_the_execution_and_registers_nothing(
    fresh_platform: LocalPlatform, settings: Settings, tmp_path: Path
) -> None:
    local = fresh_platform
    c, p = local.clients, local.platform
    # GIVEN curated data with a single class, which the training script refuses
    upload = tmp_path / "one-class.csv"
    churn.generate(300, seed=4).assign(churned=0).to_csv(upload, index=False)
    cycle.upload(c, p, upload, "churn", lambda _m: None)
    keys = cycle.wait_for_curated(c, p, "churn", lambda _m: None)
    cycle.wait_for_features(c, p, settings, keys, lambda _m: None)
    # WHEN the pipeline runs
    with pytest.raises(cycle.CycleError) as failure:
        cycle.run_training(c, p, lambda _m: None)
    # THEN the execution fails with the script's own reason, and nothing is registered
    assert "TrainingJobFailed" in str(failure.value)
    assert "single class" in str(failure.value)
    assert _packages(local, settings) == []


def test_bad_upload_is_quarantined_whole(fresh_platform: LocalPlatform) -> None:
    c, p = fresh_platform.clients, fresh_platform.platform
    c.s3.put_object(Bucket=p.landing_bucket, Key="uploads/churn/broken.csv", Body=b"not,a\ncontract,file\n")

    def report() -> dict[str, Any] | None:
        found = c.s3.list_objects_v2(Bucket=p.curated_bucket, Prefix="quarantine/churn/").get("Contents", [])
        reports = [o["Key"] for o in found if o["Key"].endswith("report.json")]
        return (
            json.loads(c.s3.get_object(Bucket=p.curated_bucket, Key=reports[0])["Body"].read())
            if reports
            else None
        )

    found = cycle.wait_for("quarantine report", report, timeout=60)
    assert found["whole_file"] is True and "missing columns" in found["reason"]
