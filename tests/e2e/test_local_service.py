"""`mlcycle local up | status | restart | down` and the commands a user runs against the service
(`train --wait`, `data`, `query`, `features`, `models`, `lineage`), each a subprocess, with a real AWS
client alongside.

One service for the module, started in a working directory with the synthesized app; the cases run in
order on it: a real AWS client uses it, the CLI trains and manages versions, `restart` keeps all of it,
then `down` stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlcycle.application.cycle import bundled_dataset
from mlcycle.application.settings import example_settings
from mlcycle.local.server import free_port
from tests.e2e.helpers import run_mlcycle

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Service:
    cwd: Path
    port: str


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, assembly: Path) -> Iterator[Service]:
    # GIVEN a working directory with a synthesized app, and the service started in it
    cwd = tmp_path_factory.mktemp("service")
    shutil.copytree(assembly, cwd / "cdk.out")
    port = str(free_port())
    up = run_mlcycle(cwd, "local", "up", "--port", port, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield Service(cwd, port)
    finally:
        run_mlcycle(cwd, "local", "down", timeout=180)  # "not running" once the last case stopped it


def test_local_service_serves_a_real_aws_client(service: Service, tmp_path: Path) -> None:
    # WHEN status is asked, THEN it names the endpoint and the platform's buckets
    status = run_mlcycle(service.cwd, "local", "status", timeout=180)
    state = json.loads(status.stdout)
    assert state["endpoint_url"] == f"http://127.0.0.1:{service.port}"
    landing = state["platform"]["landing_bucket"]
    # AND the AWS CLI works against it
    source = tmp_path / "hello.txt"
    source.write_text("hello")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    aws = [str(Path(sys.executable).with_name("aws")), "--endpoint-url", state["endpoint_url"]]
    copy = subprocess.run(
        [*aws, "s3", "cp", str(source), f"s3://{landing}/notes/hello.txt"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert copy.returncode == 0, copy.stderr
    listing = subprocess.run(
        [*aws, "s3", "ls", f"s3://{landing}/notes/"], env=env, capture_output=True, text=True, check=False
    )
    assert "hello.txt" in listing.stdout


def test_train_then_manage_versions(service: Service) -> None:
    cwd = service.cwd
    # GIVEN no data yet, training fails with a clear reason
    first = run_mlcycle(cwd, "train", "--wait")
    assert first.returncode == 1 and "no curated data" in first.stderr
    # AND once an upload is curated, through `mlcycle data upload --wait` and the service's S3 trigger
    uploaded = run_mlcycle(cwd, "data", "upload", str(bundled_dataset()), "--wait")
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert "4997" in uploaded.stdout and "3" in uploaded.stdout
    assert "churn" in run_mlcycle(cwd, "data", "list").stdout
    queried = run_mlcycle(cwd, "query", "select count(*) as n from churn")
    assert queried.returncode == 0, queried.stderr
    assert "4997" in queried.stdout
    # WHEN training runs
    trained = run_mlcycle(cwd, "train", "--wait")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "RegisterModel" in trained.stdout and "registered version 1 (Approved)" in trained.stdout
    # AND the ingest function left a current snapshot per view, which `features compact` rebuilds
    compacted = run_mlcycle(cwd, "features", "compact", "--view", "customer_profile")
    assert compacted.returncode == 0, compacted.stderr
    assert "customer_profile: snapshot rebuilt" in compacted.stdout
    assert "(was current)" in compacted.stdout
    # THEN the registry lists it as champion; reject and approve change its status
    listed = run_mlcycle(cwd, "models", "list")
    assert "*       1  Approved" in listed.stdout
    shown = run_mlcycle(cwd, "models", "show", "champion")
    assert "training_set_id" in shown.stdout and "roc_auc" in shown.stdout
    rejected = run_mlcycle(cwd, "models", "reject", "1", "--reason", "test")
    assert "version 1 is now Rejected" in rejected.stdout
    assert "no approved version" in run_mlcycle(cwd, "models", "show", "champion").stderr
    compared = run_mlcycle(cwd, "models", "compare", "1", "1")
    assert "roc_auc" in compared.stdout and "0.0000" in compared.stdout
    # AND the model's lineage runs back through the training set to the upload
    chain = run_mlcycle(cwd, "lineage", f"{example_settings().model_package_group}/1")
    assert chain.returncode == 0, chain.stderr
    assert all(kind in chain.stdout for kind in ("training_set", "curated_version", "upload")), chain.stdout


def test_restart_carries_on_from_the_kept_state(service: Service) -> None:
    cwd = service.cwd
    listed = run_mlcycle(cwd, "models", "list").stdout
    # WHEN the service restarts (a laptop reboot: `down --keep-state`, then `up`)
    restarted = run_mlcycle(cwd, "local", "restart", "--port", service.port, timeout=300)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "state kept in" in restarted.stdout
    # THEN the data, the registry and the lineage are as they were, and training works on them
    assert run_mlcycle(cwd, "models", "list").stdout == listed
    queried = run_mlcycle(cwd, "query", "select count(*) as n from churn")
    assert queried.returncode == 0 and "4997" in queried.stdout, queried.stderr
    chain = run_mlcycle(cwd, "lineage", f"{example_settings().model_package_group}/1")
    assert chain.returncode == 0 and "upload" in chain.stdout, chain.stderr
    trained = run_mlcycle(cwd, "train", "--wait")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "registered version 2" in trained.stdout
    assert "carried on from the state saved" in (cwd / ".mlcycle" / "local.log").read_text()


def test_down_stops_the_service(service: Service) -> None:
    # WHEN the service is stopped, THEN it says so and status finds nothing running
    down = run_mlcycle(service.cwd, "local", "down", timeout=180)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert run_mlcycle(service.cwd, "local", "status", timeout=180).returncode == 3
