"""The two code assets: built without Docker, reproducible, with exactly the files each runtime needs."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from infra.allow_list import BundleError, domain_modules, import_closure
from infra.bundling import REPO_ROOT, SOURCEDIR_ARCHIVE, LambdaBundle, SourceDirBundle, with_imports
from mlcycle.config import BUNDLED_CONFIG_FILE, Settings, settings_from_json
from tests.infra.synthesized import Synthesized
from tests.models import SERVING_CODE


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
    assert "mlcycle/modeling.py" in names
    assert not any(n.startswith("mlcycle/local/") for n in names)
    for script in ("train.py", "inference.py"):
        assert (script in names) == (REPO_ROOT / "pipelines" / script).is_file()


def test_lambda_hash_is_stable_and_follows_the_settings(infra_settings: Settings) -> None:
    first = LambdaBundle(settings=infra_settings).asset_hash()
    assert LambdaBundle(settings=infra_settings).asset_hash() == first
    other = infra_settings.model_copy(update={"stage": "prod"})
    assert LambdaBundle(settings=other).asset_hash() != first


#: What must never ship to AWS: the CLI, the demo and its client, the example, the embedded AWS.
NEVER_SHIPPED = (
    "mlcycle/cli.py",
    "mlcycle/commands/",
    "mlcycle/application/",
    "mlcycle/example/",
    "mlcycle/local/",
)


def _shipped(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.startswith(NEVER_SHIPPED) or n.endswith(".csv"))


def test_no_cli_demo_or_example_file_ships(synthesized: Synthesized, tmp_path: Path) -> None:
    # GIVEN the Lambda asset and the SageMaker source bundle the synth wrote
    lambda_names = {
        p.relative_to(_lambda_asset(synthesized)).as_posix() for p in _lambda_asset(synthesized).rglob("*")
    }
    (asset,) = [a for a in _assets(synthesized).values() if a["displayName"].endswith("SourceDir")]
    with tarfile.open(synthesized.assembly_dir / asset["source"]["path"], "r:gz") as tar:
        sourcedir_names = set(tar.getnames())
    # THEN neither holds a CLI, demo, example or embedded-AWS file
    assert _shipped(lambda_names) == [] and _shipped(sourcedir_names) == []
    # AND each holds its entry points and exactly the domain modules they import
    assert {n for n in lambda_names if n.startswith("functions/") and n.endswith(".py")} == {
        f"functions/{p.name}" for p in (REPO_ROOT / "functions").glob("*.py")
    }
    assert {"train.py", "evaluate.py", "mlcycle/modeling.py", *SERVING_CODE} <= sourcedir_names
    assert "mlcycle/features/store.py" not in sourcedir_names  # the jobs never import the feature store


def test_inference_code_imports_nothing_of_mlcycle() -> None:
    # model.tar.gz holds the model and inference.py with its siblings only (pipelines/train.py copies
    # nothing else)
    assert import_closure([REPO_ROOT / "pipelines" / name for name in SERVING_CODE], REPO_ROOT) == {}


def _sibling_imports(path: Path) -> set[str]:
    """The modules of ``path``'s own directory it imports, in either spelling (``.x`` or ``x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level <= 1:
            names |= {node.module} if node.module else {alias.name for alias in node.names}
    return {f"{name}.py" for name in names if (path.parent / f"{name}.py").is_file()}


def test_inference_code_is_the_files_train_copies() -> None:
    # GIVEN the modules inference.py imports from its directory, transitively
    pipelines = REPO_ROOT / "pipelines"
    found, pending = {"inference.py"}, ["inference.py"]
    while pending:
        for name in _sibling_imports(pipelines / pending.pop()) - found:
            found.add(name)
            pending.append(name)
    # THEN they are the files pipelines/train.py copies to model.tar.gz's code/ (SERVING_CODE)
    assert sorted(found) == SERVING_CODE == sorted(p.name for p in pipelines.glob("inference*.py"))


@pytest.mark.parametrize("bundle", ["lambda", "sourcedir"])
def test_bundled_code_imports_from_the_bundle_alone(
    tmp_path: Path, infra_settings: Settings, bundle: str
) -> None:
    # GIVEN a bundle written to a directory, as the asset would be unpacked in AWS
    if bundle == "lambda":
        LambdaBundle(settings=infra_settings).write(tmp_path)
        modules = [f"functions.{p.stem}" for p in (tmp_path / "functions").glob("*.py")]
    else:
        SourceDirBundle().write(tmp_path)
        with tarfile.open(tmp_path / SOURCEDIR_ARCHIVE) as archive:
            archive.extractall(tmp_path, filter="data")
        modules = ["train", "evaluate", "inference"]
    # WHEN every entry point is imported with only the bundle on the path (the checkout hidden)
    probe = textwrap.dedent(
        f"""
        import sys
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
        sys.path[:] = [p for p in sys.path if not p or "site-packages" in p or "lib/python" in p]
        sys.path.insert(0, {str(tmp_path)!r})
        import importlib
        for name in {modules!r}:
            importlib.import_module(name)
        outside = [m.__file__ for n, m in list(sys.modules.items())
                   if n.split(".")[0] in ("mlcycle", "functions", "infra", "pipelines")
                   and not str(m.__file__).startswith({str(tmp_path)!r})]
        assert not outside, outside
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    # THEN each imports, and every module it loads came from the bundle
    assert done.returncode == 0, done.stderr[-3000:]


def test_closure_follows_every_import_form(tmp_path: Path) -> None:
    package = tmp_path / "mlcycle"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .leaf import thing\n")
    (package / "sub" / "leaf.py").write_text("def thing():\n    from mlcycle import lazy\n")
    (package / "lazy.py").write_text("import mlcycle.config as c\n")
    (package / "config.py").write_text("x = 1\n")
    (package / "unused.py").write_text("")
    entry = tmp_path / "handler.py"
    entry.write_text("from mlcycle.sub import thing\n")
    # relative, function-level, aliased and from-imports of attributes are all followed; nothing else
    assert sorted(import_closure([entry], tmp_path)) == [
        "mlcycle",
        "mlcycle.config",
        "mlcycle.lazy",
        "mlcycle.sub",
        "mlcycle.sub.leaf",
    ]


def test_a_handler_reaching_above_the_domain_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "mlcycle" / "application").mkdir(parents=True)
    (tmp_path / "mlcycle" / "__init__.py").write_text("")
    (tmp_path / "mlcycle" / "application" / "__init__.py").write_text("")
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "bad.py").write_text("from mlcycle.application import cycle\n")
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with pytest.raises(BundleError, match=r"mlcycle\.application"):
        with_imports([tmp_path / "functions" / "bad.py"], tmp_path)


def test_the_domain_layer_is_the_contract_s_lowest() -> None:
    layer = domain_modules(REPO_ROOT / "pyproject.toml")
    assert {"mlcycle.config", "mlcycle.names", "mlcycle.data", "mlcycle.features"} <= set(layer)
    assert not {"mlcycle.application", "mlcycle.example", "mlcycle.local"} & set(layer)


def test_sourcedir_archive_is_reproducible(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    SourceDirBundle().write(tmp_path / "a")
    SourceDirBundle().write(tmp_path / "b")
    assert (tmp_path / "a" / SOURCEDIR_ARCHIVE).read_bytes() == (
        tmp_path / "b" / SOURCEDIR_ARCHIVE
    ).read_bytes()
