"""A large upload on the embedded AWS: S3 event -> prepare-data -> the large-upload state machine
(plan, Distributed Map over chunks, finish) -> curated parts, manifest, Glue partition, lineage."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlcycle import runtime
from mlcycle.config import LambdaSettings, Settings
from mlcycle.data import large_uploads
from mlcycle.data.manifests import manifest_keys, read_manifest
from mlcycle.example.churn import generate
from mlcycle.lineage import LineageStore
from mlcycle.local.session import LocalPlatform

pytestmark = pytest.mark.e2e


def _wait_for_manifest(s3: Any, bucket: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := manifest_keys(s3, bucket, "churn"):
            return str(found[0]["Key"])
        time.sleep(0.25)
    raise AssertionError("no manifest within the timeout")


def _finished(sfn: Any, arn: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while (status := str(sfn.describe_execution(executionArn=arn)["status"])) == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not finish"
        time.sleep(0.2)
    return status


def test_large_upload_runs_the_distributed_map(
    fresh_platform: LocalPlatform, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a threshold of 1 KB and chunks of 40 rows (the handlers run in this process)
    small = settings.model_copy(update={"functions": LambdaSettings(large_upload_bytes=1024)})
    monkeypatch.setattr(runtime, "settings", lambda: small)
    monkeypatch.setattr(large_uploads, "CHUNK_ROWS", 40)
    local, c, p = fresh_platform, fresh_platform.clients, fresh_platform.platform
    frame = generate(150, seed=31).astype({"tenure_months": "string"})
    frame.loc[77, "tenure_months"] = "-"
    # WHEN it is uploaded to the landing bucket
    c.s3.put_object(
        Bucket=p.landing_bucket, Key="uploads/churn/big.csv", Body=frame.to_csv(index=False).encode()
    )
    manifest = read_manifest(c.s3, p.curated_bucket, _wait_for_manifest(c.s3, p.curated_bucket))
    # THEN the state machine checked it in four chunks: all rows accounted for, one quarantined
    assert (manifest.rows, manifest.curated_rows, manifest.quarantined_rows) == (150, 149, 1)
    assert len(manifest.objects) == 4 and manifest.source["chunks"] == 4
    sfn = c.sfn
    machines = [m for m in sfn.list_state_machines()["stateMachines"] if "LargeUploads" in m["name"]]
    (execution,) = sfn.list_executions(stateMachineArn=machines[0]["stateMachineArn"])["executions"]
    assert execution["name"] == manifest.upload_id
    assert _finished(sfn, execution["executionArn"]) == "SUCCEEDED"
    assert manifest.summary == "1 row broke type on tenure_months"
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
    fresh_platform: LocalPlatform,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from mlcycle.application import connect
    from mlcycle.commands import data, lineage

    local = fresh_platform
    monkeypatch.setattr(
        connect,
        "connect",
        lambda _s: connect.Connection(local.platform, settings.region, local.aws.endpoint_url),
    )
    # GIVEN a small CSV with one broken row
    frame = generate(6, seed=32).astype({"age": "string"})
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
