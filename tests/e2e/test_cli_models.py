"""`mlcycle train --wait` and `mlcycle models ...` against a running embedded AWS, as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle import cycle
from mlcycle.commands.connect import connect
from mlcycle.config import load_settings
from mlcycle.cycle import bundled_dataset, wait_for_curated
from mlcycle.local.server import free_port
from tests.e2e.conftest import cli_env as _env

pytestmark = pytest.mark.e2e


def _mlcycle(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "mlcycle.cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done


def test_train_then_manage_versions(tmp_path: Path, assembly: Path) -> None:
    shutil.copytree(assembly, tmp_path / "cdk.out")
    assert _mlcycle(tmp_path, "local", "up", "--port", str(free_port())).returncode == 0
    try:
        # GIVEN no data yet, training fails with a clear reason
        first = _mlcycle(tmp_path, "train", "--wait")
        assert first.returncode == 1 and "no curated data" in first.stderr
        # AND once an upload is curated (through the service's real S3 trigger) ...
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(tmp_path)
            connection = connect(load_settings())
        s3 = connection.client("s3")
        s3.upload_file(str(bundled_dataset()), connection.platform.landing_bucket, "uploads/churn/churn.csv")
        wait_for_curated(cycle.Clients(s3, None, None, None), connection.platform, "churn", lambda _m: None)
        # WHEN training runs
        trained = _mlcycle(tmp_path, "train", "--wait")
        assert trained.returncode == 0, trained.stdout + trained.stderr
        assert "state RegisterModel" in trained.stdout and "registered version 1 (Approved)" in trained.stdout
        # THEN the registry lists it as champion; reject and approve change its status
        listed = _mlcycle(tmp_path, "models", "list")
        assert "*       1  Approved" in listed.stdout
        shown = _mlcycle(tmp_path, "models", "show", "champion")
        assert "training_set_id" in shown.stdout and "roc_auc" in shown.stdout
        rejected = _mlcycle(tmp_path, "models", "reject", "1", "--reason", "test")
        assert "version 1 is now Rejected" in rejected.stdout
        assert "no approved version" in _mlcycle(tmp_path, "models", "show", "champion").stderr
        compared = _mlcycle(tmp_path, "models", "compare", "1", "1")
        assert "roc_auc" in compared.stdout and "0.0000" in compared.stdout
    finally:
        _mlcycle(tmp_path, "local", "down")
