"""Uploads, and training runs that must fail, on the embedded AWS from the synthesized app.

One platform for the module, on which no model is ever registered; the cases run in order:

1. a large upload: S3 event -> prepare-data -> the large-upload state machine (plan, Distributed Map over
   chunks, finish) -> curated parts, manifest, Glue partition, lineage;
2. `mlcycle data upload --wait | list | show` and `mlcycle lineage` on a small upload;
3. an upload that breaks the contract is quarantined whole;
4. curated data the feature views never ingested: the training set cannot be built;
5. one-class data uploaded and curated: the training job fails, the Catch path reports and announces it.

Each upload is followed by its own upload id. The training cases first remove the curated data of the
earlier ones, so that the pipeline reads only their own.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlcycle.application import cycle
from mlcycle.config import LambdaSettings, Settings
from mlcycle.data.manifests import manifest_key, read_manifest
from mlcycle.example import churn
from mlcycle.lineage import LineageStore
from mlcycle.local.context import ACCOUNT_ID
from mlcycle.local.session import LocalPlatform
from mlcycle.training_sets import InsufficientDataError
from tests.assembly import app_settings
from tests.e2e.helpers import (
    clear_curated,
    curate,
    delete,
    failure_report,
    latest_training,
    of_type,
    packages,
    put_upload,
    run_training,
)
from tests.utils import functions_deployed_with

pytestmark = pytest.mark.e2e


def _wait_for_manifest(s3: Any, bucket: str, upload_id: str, timeout: float = 90) -> str:
    key = manifest_key("churn", upload_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents"):
            return key
        time.sleep(0.25)
    raise AssertionError("no manifest within the timeout")


def _finished(sfn: Any, arn: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while (status := str(sfn.describe_execution(executionArn=arn)["status"])) == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not finish"
        time.sleep(0.2)
    return status


def test_large_upload_runs_the_distributed_map(local: LocalPlatform, settings: Settings) -> None:
    # GIVEN the data functions deployed with a threshold of 1 KB and chunks of 40 rows
    deployed = app_settings()
    small = deployed.model_copy(
        update={"functions": LambdaSettings(large_upload_bytes=1024, large_upload_chunk_rows=40)}
    )
    c, p = local.clients, local.platform
    frame = churn.generate(150, seed=31).astype({"tenure_months": "string"})
    frame.loc[77, "tenure_months"] = "-"
    lambda_client = boto3.client("lambda", endpoint_url=local.aws.endpoint_url, region_name=settings.region)
    with functions_deployed_with(lambda_client, small, "functions.prepare_data", "functions.large_upload"):
        # WHEN it is uploaded to the landing bucket
        upload_id = put_upload(local, "uploads/churn/big.csv", frame.to_csv(index=False).encode())
        key = _wait_for_manifest(c.s3, p.curated_bucket, upload_id)
    manifest = read_manifest(c.s3, p.curated_bucket, key)
    # THEN the state machine checked it in four chunks: all rows accounted for, one quarantined
    assert (manifest.rows, manifest.curated_rows, manifest.quarantined_rows) == (150, 149, 1)
    assert len(manifest.objects) == 4 and manifest.source["chunks"] == 4
    sfn = c.sfn
    machines = [m for m in sfn.list_state_machines()["stateMachines"] if "LargeUploads" in m["name"]]
    (execution,) = sfn.list_executions(stateMachineArn=machines[0]["stateMachineArn"])["executions"]
    assert execution["name"] == manifest.upload_id
    assert _finished(sfn, execution["executionArn"]) == "SUCCEEDED"
    assert manifest.summary == "1 row broke type on tenure_months"
    # AND its four parts reached the feature views (the event names a prefix; the manifest lists them)
    cycle.wait_for_features(c.s3, p, deployed, [o.key for o in manifest.objects], lambda _m: None)
    # AND the partition is registered and the lineage recorded
    glue = boto3.client("glue", endpoint_url=local.aws.endpoint_url, region_name=settings.region)
    database = settings.prefix.replace("-", "_")
    partitions = glue.get_partitions(DatabaseName=database, TableName="churn")["Partitions"]
    assert [part["Values"] for part in partitions] == [[manifest.partitions[0].split("=")[1]]]
    db = boto3.client("dynamodb", endpoint_url=local.aws.endpoint_url, region_name=settings.region)
    store = LineageStore(p.lineage_table, client=db)
    upstream = store.trace(f"curated_version:{manifest.upload_id}", "upstream")
    assert upstream.children[0].children[0].id == f"upload:{manifest.upload_id}"
    assert json.loads(json.dumps(manifest.source))["key"] == "uploads/churn/big.csv"


def test_data_and_lineage_commands(
    local: LocalPlatform,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from mlcycle.application import connect
    from mlcycle.commands import data, lineage

    monkeypatch.setattr(
        connect,
        "connect",
        lambda _s: connect.Connection(local.platform, settings.region, local.aws.endpoint_url),
    )
    # GIVEN a small CSV with one broken row
    frame = churn.generate(6, seed=32).astype({"age": "string"})
    frame.loc[1, "region"] = "moon"
    path = tmp_path / "few.csv"
    frame.to_csv(path, index=False)
    # WHEN it is uploaded with --wait, then listed, shown and traced
    args = argparse.Namespace(file=str(path), dataset=None, wait=True, timeout=60)
    assert data.cmd_upload(args, settings) == 0
    uploaded = capsys.readouterr().out
    upload_id = uploaded.split("(upload ")[1].split(")")[0]
    assert data.cmd_list(argparse.Namespace(dataset="churn"), settings) == 0
    listed = capsys.readouterr().out
    assert data.cmd_show(argparse.Namespace(upload_id=upload_id, json=False), settings) == 0
    shown = capsys.readouterr().out
    assert lineage.cmd_lineage(argparse.Namespace(artifact=upload_id, depth=25), settings) == 0
    traced = capsys.readouterr().out
    # THEN each reports the counts, the summary and the chain
    assert "6 rows: 5 curated, 1 quarantined (1 row broke category on region)" in uploaded
    assert upload_id in listed and "uploads/churn/few.csv" in listed
    assert "5 curated, 1 quarantined" in shown and "version" in shown
    assert f"upload:{upload_id} (upload)" in traced
    assert f"-> prepare_data:{upload_id} (execution prepare_data)" in traced
    assert f"-> curated_version:{upload_id}" in traced


def test_concurrent_duplicate_deliveries_of_an_upload_curate_it_once(
    local: LocalPlatform, settings: Settings, bus_events: Callable[[], list[dict[str, Any]]]
) -> None:
    from moto.s3.models import s3_backends
    from moto.s3.notifications import _get_s3_event

    from mlcycle.local.awslambda import wait_for_async

    c, p = local.clients, local.platform
    lambda_client = boto3.client("lambda", endpoint_url=local.aws.endpoint_url, region_name=settings.region)
    (prepare,) = [
        f["FunctionName"]
        for f in lambda_client.list_functions()["Functions"]
        if f["Handler"] == "functions.prepare_data.handler"
    ]
    assert wait_for_async(timeout=60, function_name=prepare)
    bus_events()  # what earlier cases announced
    previous, local.aws.ctx.time_scale = local.aws.ctx.time_scale, 60  # Lambda's 1-minute retry in 1 s
    try:
        # GIVEN an upload whose S3 notification (one event: same version, same sequencer) is delivered three
        # times at once (S3 delivers at least once); the bucket's own notification is held back for that
        key = "uploads/churn/thrice.csv"
        notifications = c.s3.get_bucket_notification_configuration(Bucket=p.landing_bucket)
        notifications.pop("ResponseMetadata", None)
        c.s3.put_bucket_notification_configuration(Bucket=p.landing_bucket, NotificationConfiguration={})
        try:
            upload_id = put_upload(local, key, churn.generate(60, seed=34).to_csv(index=False).encode())
        finally:
            c.s3.put_bucket_notification_configuration(
                Bucket=p.landing_bucket, NotificationConfiguration=notifications
            )
        backend = s3_backends[ACCOUNT_ID]["aws"]
        stored = backend.get_object(p.landing_bucket, key)
        event = _get_s3_event("s3:ObjectCreated:Put", backend.get_bucket(p.landing_bucket), stored, "dup")
        # WHEN the three copies run concurrently
        for _ in range(3):
            lambda_client.invoke(FunctionName=prepare, InvocationType="Event", Payload=json.dumps(event))
        assert wait_for_async(timeout=120, function_name=prepare)
    finally:
        local.aws.ctx.time_scale = previous
    # THEN the upload was curated once: one version of its curated object, one event
    manifest = read_manifest(c.s3, p.curated_bucket, manifest_key("churn", upload_id))
    assert manifest.rows == manifest.curated_rows == 60
    (curated,) = manifest.objects
    versions = c.s3.list_object_versions(Bucket=p.curated_bucket, Prefix=curated.key).get("Versions", [])
    assert len([v for v in versions if v["Key"] == curated.key]) == 1
    announced = [
        e for e in of_type(bus_events(), "DatasetValidated") if e["detail"]["upload_id"] == upload_id
    ]
    assert len(announced) == 1


def test_bad_upload_is_quarantined_whole(local: LocalPlatform) -> None:
    c, p = local.clients, local.platform
    upload_id = put_upload(local, "uploads/churn/broken.csv", b"not,a\ncontract,file\n")
    report_key = f"quarantine/churn/{upload_id}/report.json"

    def report() -> dict[str, Any] | None:
        found = c.s3.list_objects_v2(Bucket=p.curated_bucket, Prefix=report_key).get("Contents", [])
        return (
            json.loads(c.s3.get_object(Bucket=p.curated_bucket, Key=report_key)["Body"].read())
            if found
            else None
        )

    found = cycle.wait_for("quarantine report", report, timeout=60)
    assert found["whole_file"] is True and "missing columns" in found["reason"]


def test_curated_data_without_features_fails_the_build_clearly(
    local: LocalPlatform, settings: Settings, bus_events: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN curated data the feature views never ingested (the offline store lacks it), and no other
    clear_curated(local)
    keys = curate(local, settings, churn.generate(400, seed=5), "unfeatured", features=False)
    bus_events()  # what earlier cases announced
    # WHEN the pipeline runs
    run = run_training(local)
    delete(local, keys)
    # THEN BuildTrainingSet refuses with the reason, through the failure path, and trains nothing
    assert run.status == "FAILED", run.output
    assert InsufficientDataError.__name__ in run.error + run.cause
    assert "no feature values" in run.cause and "customer_profile" in run.cause
    assert "TrainModel" not in run.states and run.states[-2:] == ["ReportFailure", "PipelineFailed"]
    assert [e["detail"]["execution_arn"] for e in of_type(bus_events(), "TrainingFailed")] == [run.arn]
    assert packages(local, settings) == []


def test_failing_training_script_fails_the_execution_is_reported_and_announced(
    local: LocalPlatform, settings: Settings, bus_events: Callable[[], list[dict[str, Any]]], tmp_path: Path
) -> None:
    c, p = local.clients, local.platform
    # GIVEN an upload with a single class, curated and ingested, and no other curated data
    clear_curated(local)
    upload = tmp_path / "one-class.csv"
    churn.generate(300, seed=4).assign(churned=0).to_csv(upload, index=False)
    upload_id = cycle.upload(c, p, upload, "churn", lambda _m: None)
    keys = cycle.wait_for_curated(c, p, "churn", upload_id, lambda _m: None)
    cycle.wait_for_features(c.s3, p, settings, keys, lambda _m: None)
    bus_events()  # what earlier cases announced
    # WHEN the pipeline runs: the pre-training tests of the training script refuse the data
    with pytest.raises(cycle.CycleError) as failure:
        cycle.run_training(c, p, lambda _m: None)
    # THEN the execution fails with the script's own reason
    assert "TrainingJobFailed" in str(failure.value)
    assert "single class" in str(failure.value)
    run = latest_training(local)
    assert run.status == "FAILED" and run.error == "TrainingJobFailed"
    assert "label_balance" in run.cause and "single class" in run.cause
    # AND the Catch path reports it, announces it, and nothing is registered
    assert run.states[-2:] == ["ReportFailure", "PipelineFailed"]
    report = failure_report(local, run)
    assert report["error"] == "TrainingJobFailed" and "single class" in report["cause"]
    failed = of_type(bus_events(), "TrainingFailed")
    assert [e["detail"]["execution_arn"] for e in failed] == [run.arn]
    assert failed[0]["detail"]["report_uri"].endswith(f"failures/{run.name}/report.json")
    assert packages(local, settings) == []
