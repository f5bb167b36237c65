"""End-to-end fixtures: the synthesized app, provisioned into an embedded AWS once per test module.

Provisioning a platform (~120 resources) takes seconds, so the tests of a module share one: they run in
their module's order on it, and each module says what its tests leave behind for the next ones. A
module's tests stay on one xdist worker (its ``xdist_group``; the embedded AWS picks a free port, so
workers run one each).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlcycle.config import Settings
from mlcycle.local.session import LocalPlatform, bus_listener, local_platform


@pytest.fixture(scope="session")
def assembly(settings: Settings, request: pytest.FixtureRequest) -> Path:
    """The cloud assembly the platforms are provisioned from: the one named by MLCYCLE_ASSEMBLY if it holds
    the stack's template, else the session's gated synth (shared with the infra suite)."""
    given = os.environ.get("MLCYCLE_ASSEMBLY")
    if given and (Path(given) / f"{settings.prefix}.template.json").exists():
        return Path(given)
    gated: Path = request.getfixturevalue("gated_assembly")
    return gated


@pytest.fixture(scope="module")
def local(settings: Settings, assembly: Path) -> Iterator[LocalPlatform]:
    """The module's platform: the synthesized app provisioned into its own embedded AWS."""
    with local_platform(settings, assembly) as platform:
        yield platform


@pytest.fixture(scope="module")
def bus_events(local: LocalPlatform) -> Callable[[], list[dict[str, Any]]]:
    """Drains a queue that receives every event put on our bus since the last drain (events from before the
    fixture was first requested are not there)."""
    return bus_listener(local, "pipeline-events")
