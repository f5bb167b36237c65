"""End-to-end fixtures: the synthesized app, provisioned into a fresh embedded AWS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcycle.config import Settings
from mlcycle.local.session import LocalPlatform, local_platform

REPO = Path(__file__).resolve().parents[2]


def cli_env() -> dict[str, str]:
    """The environment for `mlcycle` subprocesses: this checkout's code, whatever the cwd."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="session")
def assembly(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthesis per session. `make test` has already run the gated synth and names it in
    MLCYCLE_ASSEMBLY; a bare `pytest` synthesizes here (template validation off)."""
    from infra.app_builder import synth

    given = os.environ.get("MLCYCLE_ASSEMBLY")
    if given and (Path(given) / f"{settings.prefix}.template.json").exists():
        return Path(given)
    out = tmp_path_factory.mktemp("cdk.out")
    synth(settings, out)
    return out


@pytest.fixture
def fresh_platform(settings: Settings, assembly: Path) -> Iterator[LocalPlatform]:
    with local_platform(settings, assembly) as local:
        yield local
