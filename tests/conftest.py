"""Fixtures shared by every level of the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlcycle.application.settings import example_settings
from mlcycle.config import Settings
from tests.assembly import app_settings, gated_synth, session_root
from tests.utils import REGION

# No test may reach a real AWS account, whatever the developer's shell exports.
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "mlcycle-tests",
        "CDK_VALIDATION": "false",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return example_settings()


@pytest.fixture(autouse=True)
def function_settings(settings: Settings) -> Iterator[None]:
    """Handlers called directly read the example's settings, as if the CDK app had bundled them."""
    from mlcycle import runtime

    with runtime.supplied_settings(settings):
        yield


@pytest.fixture
def moto_aws() -> Iterator[None]:
    """In-process moto for functional tests of one handler or adapter."""
    from moto import mock_aws

    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        yield


@pytest.fixture
def s3(moto_aws: None) -> Any:
    return boto3.client("s3", region_name=REGION)


@pytest.fixture(scope="session")
def gated_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cloud assembly of the session's one gated synth (tests/assembly.py), shared by the infra
    assertions and the e2e platforms, and by the xdist workers of the run."""
    return gated_synth(session_root(tmp_path_factory), app_settings())


#: Tests that start an embedded AWS (moto in server mode) in the test process.
_EMBEDDED = ("tests/e2e/", "tests/functional/local/", "tests/functional/test_query.py")
#: Tests that only drive an embedded AWS in another process (the `mlcycle local` daemon).
_DAEMON = ("tests/e2e/test_local_service.py", "tests/e2e/test_guarded_deployments.py")


def _rank(nodeid: str) -> int:
    """Where a test runs: the CDK app's tests (the first starts the gated synth) first; then the
    in-process tests; then the daemon's and the e2e modules (the longest units of work, started while the
    other worker still has work); the functional tests of the embedded AWS (many short ones) last.

    Once moto has run in server mode in a process, every in-process ``mock_aws`` start and stop resets
    the many backends the server loaded (about 1.2 s a test instead of milliseconds: measured), so on
    every worker the in-process tests come before any test that starts an embedded AWS.
    """
    if nodeid.startswith("tests/infra/"):
        return 0
    if nodeid.startswith(_DAEMON):
        return 2
    if nodeid.startswith("tests/e2e/"):
        return 3
    if nodeid.startswith(_EMBEDDED):
        return 4
    return 1


def _work_unit(nodeid: str) -> str:
    """The tests that go to one xdist worker together, in order: those that share an expensive fixture.
    The CDK app's tests share one construct tree (``synthesized``); an e2e module's tests share its
    platform (``local``, ``service``) and build on each other's state. Any other test is a unit alone."""
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/infra/"):
        return "tests/infra/"
    if path.startswith("tests/e2e/"):
        return path
    return nodeid


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the run (see :func:`_rank`; a stable sort keeps each module's own order)."""
    items.sort(key=lambda item: _rank(item.nodeid))


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: pytest -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N`` (``make test``): xdist's load-scope scheduling over :func:`_work_unit`'s units, handed out in
    the collection's order (see :func:`_rank`). xdist's default, one test at a time to any worker, would
    split a module's platform over workers and break its cases' order; ``--dist loadfile`` and
    ``loadscope`` are safe too, but leave the infra tests to build a construct tree per worker.

    The units are ours, by path, not ``xdist_group`` marks (``--dist loadgroup``): xdist passes a mark's
    group to the scheduler by rewriting the test's node id, which pytest 9.2 no longer lets a plugin do
    (pytest-dev/pytest-xdist#1386: the marks are silently ignored).
    """
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    config.option.loadscopereorder = False  # the units in the collection's order, not largest first
    return WorkUnitScheduling(config, log)
