"""End-to-end fixtures: the synthesized app, provisioned into a fresh embedded AWS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcycle.config import Settings
from mlcycle.local.session import LocalPlatform, local_platform


@pytest.fixture(scope="session")
def assembly(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthesis per session (template validation off here; `make test` runs the full gated synth)."""
    from infra.app_builder import synth

    out = tmp_path_factory.mktemp("cdk.out")
    synth(settings, out)
    return out


@pytest.fixture
def fresh_platform(settings: Settings, assembly: Path) -> Iterator[LocalPlatform]:
    with local_platform(settings, assembly) as local:
        yield local
