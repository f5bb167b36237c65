"""Fault injection on the local platform: each case ends with every row accounted for and nothing done twice.

* S3 answering ``SlowDown`` and DynamoDB throttling while an upload is prepared;
* the prepare function dying between writing the curated data and announcing it, then retried by Lambda;
* a training job killed in the middle of its run;
* the embedded AWS itself restarted while a training pipeline runs and an upload is prepared.

The functions run their bundles in their own processes; a fault that needs code (dying at one point) is
deployed into the function's bundle, as a chaos tool would, not patched into this process.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlcycle.application import cycle
from mlcycle.config import Settings
from mlcycle.data.manifests import manifest_key, read_manifest
from mlcycle.example import churn
from mlcycle.local import faults
from mlcycle.local.awslambda import wait_for_async
from mlcycle.local.common import fault_injection
from mlcycle.local.session import LocalPlatform, restart
from mlcycle.names import EventType
from tests.e2e.helpers import (
    Run,
    clear_curated,
    curate,
    delete,
    latest_training,
    of_type,
    packages,
    put_upload,
)
from tests.utils import redeployed

#: Dies (as an out-of-memory kill would) at the first ``events.publish`` of its environment's life, once
#: per FAULT_DIR: after the function wrote the curated data and before it announced it.
_DYING_SHIM = """
import os
import pathlib

import functions.prepare_data as real
from mlcycle import events

_publish = events.publish


def _dying(*args, **kwargs):
    marker = pathlib.Path(os.environ["FAULT_DIR"]) / "died"
    if not marker.exists():
        marker.write_text("once")
        os._exit(137)
    return _publish(*args, **kwargs)


events.publish = _dying
handler = real.handler
"""


def _lambda(local: LocalPlatform) -> Any:
    return boto3.client("lambda", endpoint_url=local.aws.endpoint_url, region_name=local.aws.ctx.region)


def _prepare_function(local: LocalPlatform) -> str:
    (name,) = [
        f["FunctionName"]
        for f in _lambda(local).list_functions()["Functions"]
        if f["Handler"] == "functions.prepare_data.handler"
    ]
    return str(name)


def _manifest(local: LocalPlatform, upload_id: str, timeout: float = 90) -> Any:
    c, p = local.clients, local.platform

    def written() -> Any:
        try:
            return read_manifest(c.s3, p.curated_bucket, manifest_key("churn", upload_id))
        except c.s3.exceptions.NoSuchKey:
            return None

    return cycle.wait_for(f"the manifest of {upload_id}", written, timeout)


@contextmanager
def _faster_clock(local: LocalPlatform, scale: float) -> Iterator[None]:
    previous, local.aws.ctx.time_scale = local.aws.ctx.time_scale, scale
    try:
        yield
    finally:
        local.aws.ctx.time_scale = previous


def _announced(events: list[dict[str, Any]], kind: str, upload_id: str) -> list[dict[str, Any]]:
    return [e for e in of_type(events, kind) if e["detail"].get("upload_id") == upload_id]


def _broken_upload(rows: int, seed: int) -> bytes:
    frame = churn.generate(rows, seed=seed).astype({"age": "string"})
    frame.loc[3, "age"] = "old"
    return frame.to_csv(index=False).encode()


def test_throttled_s3_and_dynamodb_lose_no_row(
    local: LocalPlatform, bus_events: Callable[[], list[dict[str, Any]]]
) -> None:
    p = local.platform
    assert wait_for_async(timeout=60, function_name=_prepare_function(local))
    bus_events()
    # GIVEN S3 answering SlowDown to the first curated writes, and DynamoDB throttling the lineage table
    slow = fault_injection.slow_down(times=3, operation="PutObject", bucket=p.curated_bucket)
    throttled = fault_injection.throttle_dynamodb(times=3, table=p.lineage_table)
    try:
        # WHEN an upload with one broken row is prepared
        upload_id = put_upload(local, "uploads/churn/throttled.csv", _broken_upload(80, seed=41))
        manifest = _manifest(local, upload_id)
        assert wait_for_async(timeout=60, function_name=_prepare_function(local))
    finally:
        fault_injection.clear()
    # THEN the faults were met, and every row is accounted for, once
    assert (slow.hits, throttled.hits) == (3, 3)
    assert (manifest.rows, manifest.curated_rows, manifest.quarantined_rows) == (80, 79, 1)
    assert len(_announced(bus_events(), "DatasetValidated", upload_id)) == 1


def _dying_prepare(local: LocalPlatform, fault_dir: Path) -> AbstractContextManager[None]:
    """The prepare function redeployed with the dying shim and a 5 s timeout (so that Lambda's retry, a
    virtual minute later, finds the crashed run's idempotency lock expired), then restored."""
    client, name = _lambda(local), _prepare_function(local)
    variables = client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    return redeployed(
        client,
        name,
        {"fault_shim.py": _DYING_SHIM},
        Handler="fault_shim.handler",
        Timeout=5,
        Environment={"Variables": {**variables, "FAULT_DIR": str(fault_dir)}},
    )


def test_a_function_that_dies_before_announcing_is_retried_and_curates_once(
    local: LocalPlatform, bus_events: Callable[[], list[dict[str, Any]]], tmp_path: Path
) -> None:
    c, p = local.clients, local.platform
    prepare = _prepare_function(local)  # by its handler, which the fault below replaces
    assert wait_for_async(timeout=60, function_name=prepare)
    bus_events()
    # GIVEN a prepare function that dies once, after writing the curated data, before announcing it
    with _dying_prepare(local, tmp_path), _faster_clock(local, 10):
        # WHEN an upload arrives, and Lambda retries the invocation that died
        upload_id = put_upload(local, "uploads/churn/dies.csv", _broken_upload(70, seed=42))
        assert wait_for_async(timeout=120, function_name=prepare)
    # THEN it died once, and the retry finished the work: every row accounted for, announced once
    assert (tmp_path / "died").exists()
    manifest = _manifest(local, upload_id, timeout=10)
    assert (manifest.rows, manifest.curated_rows, manifest.quarantined_rows) == (70, 69, 1)
    events = bus_events()
    assert len(_announced(events, "DatasetValidated", upload_id)) == 1
    # AND the rewrite of the curated object (deterministic key) holds the same rows as the first write
    (curated,) = manifest.objects
    listed = c.s3.list_object_versions(Bucket=p.curated_bucket, Prefix=curated.key).get("Versions", [])
    bodies = {
        c.s3.get_object(Bucket=p.curated_bucket, Key=curated.key, VersionId=v["VersionId"])["Body"].read()
        for v in listed
        if v["Key"] == curated.key
    }
    assert len(bodies) == 1


def test_a_training_job_killed_mid_run_fails_the_pipeline_and_registers_nothing(
    local: LocalPlatform, settings: Settings, bus_events: Callable[[], list[dict[str, Any]]]
) -> None:
    clear_curated(local)
    keys = curate(local, settings, churn.generate(800, seed=43), "to-be-killed")
    bus_events()
    # GIVEN a training pipeline whose training job is running
    arn = _training_started(local)
    pid = _training_process(local)
    assert pid is not None
    # WHEN its process is killed
    os.kill(pid, signal.SIGKILL)
    # THEN the job fails, the pipeline takes its failure path, and no model is registered
    _wait_until_ended(local, arn, timeout=120)
    run = latest_training(local)
    assert run.arn == arn and run.status == "FAILED"
    assert run.error == "TrainingJobFailed"
    assert run.states[-2:] == ["ReportFailure", "PipelineFailed"]
    assert [e["detail"]["execution_arn"] for e in of_type(bus_events(), "TrainingFailed")] == [arn]
    assert packages(local, settings) == []
    delete(local, keys)


def test_a_restart_of_the_embedded_aws_mid_pipeline_resumes_it_and_loses_no_row(
    local: LocalPlatform, settings: Settings, bus_events: Callable[[], list[dict[str, Any]]]
) -> None:
    clear_curated(local)
    keys = curate(local, settings, churn.generate(3000, seed=11), "restarted")
    registered_before = len(packages(local, settings))
    bus_events()
    # GIVEN a training pipeline whose training job is running, and an upload on its way to prepare-data
    arn = _training_started(local)
    upload_id = put_upload(local, "uploads/churn/restarted.csv", _broken_upload(60, seed=45))
    faults_before = len(faults.read(local.aws.ctx.work_dir))
    # WHEN the embedded AWS restarts (stopped keeping its state, started again on it)
    resumed = restart(local)
    # THEN the pipeline carries on where it was: the job ran again, the model is registered once
    assert resumed["executions"] >= 1 and resumed["training"] == 1
    _wait_until_ended(local, arn, timeout=240)
    run = Run(local.clients.sfn, arn)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.states.count("ValidateRun") == run.states.count("TrainModel") == 1
    assert run.states[-1] == "Approved" or "RegisterModel" in run.states
    assert len(packages(local, settings)) == registered_before + 1
    # AND the upload: every row accounted for, announced once
    manifest = _manifest(local, upload_id, timeout=120)
    assert (manifest.rows, manifest.curated_rows, manifest.quarantined_rows) == (60, 59, 1)
    assert wait_for_async(timeout=120)
    events = bus_events()
    assert len(_announced(events, "DatasetValidated", upload_id)) == 1
    registered = of_type(events, EventType.MODEL_REGISTERED)
    assert len([e for e in registered if arn.rsplit(":", 1)[1] in json.dumps(e["detail"])]) == 1
    # AND what the old instance's work lost after the snapshot counts as no fault: it ran again
    assert faults.read(local.aws.ctx.work_dir)[faults_before:] == []
    delete(local, keys)


def _training_started(local: LocalPlatform) -> str:
    """Start the training pipeline and wait until its training job's process runs; the execution's ARN."""
    arn = cycle.start_training(local.clients.sfn, local.platform, {"poll_seconds": 1})
    cycle.wait_for("the training job's process", lambda: _training_process(local), timeout=240)
    return arn


def _wait_until_ended(local: LocalPlatform, arn: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while local.clients.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"the pipeline did not end within {timeout:.0f} s"
        time.sleep(0.5)


def _training_process(local: LocalPlatform) -> int | None:
    """The pid of a running training script of this embedded AWS (it runs in the job's code directory)."""
    work = str(local.aws.ctx.work_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [part.decode(errors="replace") for part in (entry / "cmdline").read_bytes().split(b"\0")]
            cwd = str((entry / "cwd").readlink())
        except OSError:
            continue
        if cwd.startswith(work) and any(Path(part).name == "train.py" for part in argv):
            return int(entry.name)
    return None


@pytest.fixture(autouse=True)
def _no_fault_left() -> Iterator[None]:
    yield
    fault_injection.clear()


def test_faults_left_nothing_behind(local: LocalPlatform) -> None:
    """The restored prepare function answers as before (a guard for the cases after this module's)."""
    configuration = _lambda(local).get_function_configuration(FunctionName=_prepare_function(local))
    assert configuration["Handler"] == "functions.prepare_data.handler"
    assert "FAULT_DIR" not in configuration["Environment"]["Variables"]
