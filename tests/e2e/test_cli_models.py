"""`mlcycle train --wait` and `mlcycle models ...` against a running embedded AWS, as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.application.cycle import bundled_dataset
from mlcycle.application.settings import example_settings
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
        # AND once an upload is curated, through `mlcycle data upload --wait` and the service's S3 trigger
        uploaded = _mlcycle(tmp_path, "data", "upload", str(bundled_dataset()), "--wait")
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
        assert "4997" in uploaded.stdout and "3" in uploaded.stdout
        assert "churn" in _mlcycle(tmp_path, "data", "list").stdout
        queried = _mlcycle(tmp_path, "query", "select count(*) as n from churn")
        assert queried.returncode == 0, queried.stderr
        assert "4997" in queried.stdout
        # WHEN training runs
        trained = _mlcycle(tmp_path, "train", "--wait")
        assert trained.returncode == 0, trained.stdout + trained.stderr
        assert "state RegisterModel" in trained.stdout and "registered version 1 (Approved)" in trained.stdout
        # AND the ingest function left a current snapshot per view, which `features compact` rebuilds
        compacted = _mlcycle(tmp_path, "features", "compact", "--view", "customer_profile")
        assert compacted.returncode == 0, compacted.stderr
        assert "customer_profile: snapshot rebuilt" in compacted.stdout
        assert "(was current)" in compacted.stdout
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
        # AND the model's lineage runs back through the training set to the upload
        chain = _mlcycle(tmp_path, "lineage", f"{example_settings().model_package_group}/1")
        assert chain.returncode == 0, chain.stderr
        assert all(kind in chain.stdout for kind in ("training_set", "curated_version", "upload")), (
            chain.stdout
        )
    finally:
        _mlcycle(tmp_path, "local", "down")
