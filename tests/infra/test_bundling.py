"""The two code assets: built without Docker, reproducible, with exactly the files each runtime needs."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from infra.bundling import REPO_ROOT, SOURCEDIR_ARCHIVE, LambdaBundle, SourceDirBundle
from mlcycle.config import BUNDLED_CONFIG_FILE, Settings, settings_from_json
from tests.infra.conftest import Synthesized


def _assets(synthesized: Synthesized) -> dict[str, Any]:
    manifest = synthesized.template_path.with_name(f"{synthesized.stack.artifact_id}.assets.json")
    files: dict[str, Any] = json.loads(manifest.read_text())["files"]
    return files


def _lambda_asset(synthesized: Synthesized) -> Path:
    (asset,) = [a for a in _assets(synthesized).values() if a["source"]["packaging"] == "zip"]
    return synthesized.assembly_dir / str(asset["source"]["path"])


def test_lambda_asset_holds_code_and_resolved_settings(synthesized: Synthesized) -> None:
    root = _lambda_asset(synthesized)
    assert root.is_dir()
    assert settings_from_json((root / BUNDLED_CONFIG_FILE).read_text()) == synthesized.settings
    assert (root / "mlcycle" / "config.py").is_file()
    assert (root / "functions").is_dir() == (REPO_ROOT / "functions").is_dir()
    assert not (root / "mlcycle" / "local").exists()
    assert not list(root.rglob("cli*.py")) and not list(root.rglob("__pycache__"))


def test_sourcedir_asset_is_one_tar_gz_with_scripts_on_top(synthesized: Synthesized) -> None:
    (asset,) = [a for a in _assets(synthesized).values() if a["displayName"].endswith("SourceDir")]
    assert asset["source"]["packaging"] == "file"
    (destination,) = asset["destinations"].values()
    assert destination["objectKey"].endswith(".gz")
    with tarfile.open(synthesized.assembly_dir / asset["source"]["path"], "r:gz") as tar:
        names = set(tar.getnames())
    assert "mlcycle/config.py" in names
    assert not any(n.startswith("mlcycle/local/") for n in names)
    for script in ("train.py", "inference.py"):
        assert (script in names) == (REPO_ROOT / "pipelines" / script).is_file()


def test_lambda_hash_is_stable_and_follows_the_settings(infra_settings: Settings) -> None:
    first = LambdaBundle(settings=infra_settings).asset_hash()
    assert LambdaBundle(settings=infra_settings).asset_hash() == first
    other = infra_settings.model_copy(update={"stage": "prod"})
    assert LambdaBundle(settings=other).asset_hash() != first


@pytest.mark.parametrize("excluded", ["local", "cli.py"])
def test_bundles_skip_what_never_runs_in_aws(tmp_path: Path, infra_settings: Settings, excluded: str) -> None:
    (tmp_path / "mlcycle" / "local").mkdir(parents=True)
    (tmp_path / "mlcycle" / "config.py").write_text("x = 1\n")
    (tmp_path / "mlcycle" / "local" / "server.py").write_text("y = 1\n")
    (tmp_path / "mlcycle" / "cli.py").write_text("z = 1\n")
    names = {name for _, name in LambdaBundle(settings=infra_settings, source_root=tmp_path).files()}
    assert names == {"mlcycle/config.py"}
    names = {name for _, name in SourceDirBundle(source_root=tmp_path).files()}
    assert names == {"mlcycle/config.py"}


def test_sourcedir_archive_is_reproducible(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    SourceDirBundle().write(tmp_path / "a")
    SourceDirBundle().write(tmp_path / "b")
    assert (tmp_path / "a" / SOURCEDIR_ARCHIVE).read_bytes() == (
        tmp_path / "b" / SOURCEDIR_ARCHIVE
    ).read_bytes()
