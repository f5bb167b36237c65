"""`mlcycle local up | status | down` as a user runs them, with a real AWS client against the service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.local.server import free_port
from tests.e2e.conftest import cli_env as _env

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _mlcycle(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlcycle.cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_local_service_serves_a_real_aws_client(tmp_path: Path, assembly: Path) -> None:
    # GIVEN a working directory with a synthesized app
    shutil.copytree(assembly, tmp_path / "cdk.out")
    port = str(free_port())
    up = _mlcycle(tmp_path, "local", "up", "--port", port)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        # WHEN status is asked, THEN it names the endpoint and the platform's buckets
        status = _mlcycle(tmp_path, "local", "status")
        state = json.loads(status.stdout)
        assert state["endpoint_url"] == f"http://127.0.0.1:{port}"
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
    finally:
        down = _mlcycle(tmp_path, "local", "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert _mlcycle(tmp_path, "local", "status").returncode == 3
