"""Every module sits in one layer of the import contract, so lint-imports checks all of them."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _layers() -> list[list[str]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers"]
    return [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in contract["layers"]]


def _top_level(package: str) -> set[str]:
    root = REPO / package
    modules = {p.stem for p in root.glob("*.py") if p.name != "__init__.py"}
    packages = {p.parent.name for p in root.glob("*/__init__.py")}
    return {f"{package}.{name}" for name in modules | packages}


def test_every_module_of_mlcycle_is_in_exactly_one_layer() -> None:
    listed = [module for layer in _layers() for module in layer]
    assert len(listed) == len(set(listed)), "a module is listed in two layers"
    assert _top_level("mlcycle") == {m for m in listed if m.startswith("mlcycle.")}
    assert {"infra", "functions", "pipelines"} <= set(listed)


def test_the_domain_is_the_lowest_layer_and_holds_no_runtime() -> None:
    domain = set(_layers()[-1])
    assert "mlcycle.config" in domain and "mlcycle.names" in domain
    assert not domain & {"mlcycle.local", "mlcycle.application", "mlcycle.cli", "mlcycle.serving"}
