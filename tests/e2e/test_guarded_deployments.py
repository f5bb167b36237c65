"""Shadow mode and deployment guardrails end to end, as a user drives them: each `mlcycle train --wait`
registers a challenger that waits for review; while it waits it shadows the champion (a copy of live
traffic, compared by `mlcycle endpoints shadow`); its approval deploys it under a canary. A broken one
(fault injection: it fails half its predictions once it serves) shows its failures in the shadow report
without any caller seeing one, then is rolled back by the endpoint's error-rate alarm while the champion
keeps serving; a good one agrees with the champion in the shadow and completes its canary.

One service for the module: `mlcycle local up` in a working directory whose mlcycle.toml asks for shadow
mode, a reviewer for every version, and a fast policy (a 50% canary baking 20 s, 10-second alarm periods:
locally each invocation is its own datapoint, see the README). A client thread sends traffic throughout,
as production would; nothing tells the embedded AWS which model is bad: the alarm, evaluated from the
endpoint's metrics, decides.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from mlcycle.application.cycle import bundled_dataset
from mlcycle.application.settings import resolve_settings
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.local.server import free_port
from tests.e2e.helpers import run_mlcycle

pytestmark = pytest.mark.e2e

FAST_POLICY = """
[thresholds]
auto_approve = false   # every version waits for a reviewer, who reads `mlcycle endpoints shadow` first

[serving.shadow]
traffic_percent = 100

[serving]
alarm_period_seconds = 10
max_error_rate = 0.05

[serving.deployment]
strategy = "canary"
canary_percent = 50
wait_seconds = 20
termination_wait_seconds = 5
max_execution_seconds = 600
"""


@dataclass
class Service:
    cwd: Path
    settings: Settings
    client: Callable[[str], Any]


@dataclass
class Traffic:
    """Counts of what a client saw: answers, and the model errors of a failing model."""

    ok: int = 0
    model_errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> tuple[int, int]:
        return self.ok, self.model_errors


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # GIVEN a project directory with a fast deployment policy, the service up and the example data curated
    cwd = tmp_path_factory.mktemp("guardrails")
    (cwd / "mlcycle.toml").write_text(FAST_POLICY)
    port = free_port()
    up = run_mlcycle(cwd, "local", "up", "--port", str(port), timeout=240)  # synthesizes this app first
    assert up.returncode == 0, up.stdout + up.stderr
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    settings = resolve_settings(cwd / "mlcycle.toml")
    config = Config(region_name=settings.region, retries={"max_attempts": 1})

    def client(name: str) -> Any:
        return session.client(name, endpoint_url=f"http://127.0.0.1:{port}", config=config)

    try:
        uploaded = run_mlcycle(cwd, "data", "upload", str(bundled_dataset()), "--wait")
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
        yield Service(cwd, settings, client)
    finally:
        run_mlcycle(cwd, "local", "down", timeout=180)
        shutil.rmtree(cwd / ".mlcycle", ignore_errors=True)


@pytest.fixture(scope="module")
def traffic(service: Service) -> Iterator[Traffic]:
    """Requests to the endpoint in a loop, from the first model's deployment on."""
    runtime = service.client("sagemaker-runtime")
    rows = churn.generate(3, seed=5)[list(service.settings.problem.features)]
    body = rows.to_csv(header=False, index=False)
    counts = Traffic()

    def send() -> None:
        while not counts.stop.is_set():
            try:
                runtime.invoke_endpoint(
                    EndpointName=service.settings.endpoint_name, ContentType="text/csv", Body=body
                )
                counts.ok += 1
            except runtime.exceptions.ModelError:
                counts.model_errors += 1
            except Exception:  # the endpoint is not there yet
                time.sleep(0.5)
            time.sleep(0.03)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    yield counts
    counts.stop.set()
    thread.join(timeout=10)


def _train(service: Service, version: int, *extra: str) -> None:
    """`mlcycle train --wait`: the version registered waits for review."""
    trained = run_mlcycle(service.cwd, "train", "--wait", *extra, timeout=600)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert f"registered version {version} (PendingManualApproval)" in trained.stdout, trained.stdout


def _approve(service: Service, version: int) -> None:
    approved = run_mlcycle(service.cwd, "models", "approve", str(version))
    assert approved.returncode == 0, approved.stdout + approved.stderr


def _shadow_report(
    service: Service, until: Callable[[dict[str, Any]], bool], timeout: float = 90
) -> dict[str, Any]:
    """`mlcycle endpoints shadow NAME --json`, asked until ``until`` holds of it."""
    deadline = time.monotonic() + timeout
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = run_mlcycle(service.cwd, "endpoints", "shadow", service.settings.endpoint_name, "--json")
        if shown.returncode == 0:
            report = json.loads(shown.stdout)
            if until(report):
                return report
        time.sleep(2)
    raise AssertionError(f"the shadow report did not get there within {timeout}s: {report or shown.stderr}")


def _outcome(service: Service, version: int, timeout: float = 180) -> str:
    """How the deployment of ``version`` ended, once functions/deployment_outcome.py recorded it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recorded = _metadata(service, version).get("deployment", "")
        if recorded:
            return recorded
        time.sleep(1)
    raise AssertionError(f"the deployment of version {version} did not end within {timeout}s")


def _metadata(service: Service, version: int) -> dict[str, str]:
    sagemaker = service.client("sagemaker")
    group = service.settings.model_package_group
    arn = next(
        p["ModelPackageArn"]
        for p in sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
        if p["ModelPackageVersion"] == version
    )
    return dict(sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"])


def _endpoint(service: Service) -> dict[str, Any]:
    described = service.client("sagemaker").describe_endpoint(EndpointName=service.settings.endpoint_name)
    return dict(described)


def _alarms_quiet(service: Service, timeout: float = 180) -> None:
    """Wait until no alarm is in ALARM (a rollback's errors age out of the alarm's window; on a loaded
    machine the evaluations that clear it come later)."""
    cloudwatch = service.client("cloudwatch")
    deadline = time.monotonic() + timeout
    while firing := cloudwatch.describe_alarms(StateValue="ALARM")["MetricAlarms"]:
        reasons = [(a["AlarmName"], a.get("StateReason")) for a in firing]
        assert time.monotonic() < deadline, f"alarms still firing after {timeout}s: {reasons}"
        time.sleep(1)


def _show(service: Service) -> str:
    shown = run_mlcycle(service.cwd, "endpoints", "show", service.settings.endpoint_name)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_the_first_model_creates_the_endpoint(service: Service, traffic: Traffic) -> None:
    # WHEN the first model is trained and approved (with no champion, there is nothing to shadow)
    _train(service, 1)
    _approve(service, 1)
    # THEN it creates the endpoint, which answers
    assert _outcome(service, 1) == "deployed"
    before = traffic.ok
    deadline = time.monotonic() + 30
    while traffic.ok < before + 20:
        assert time.monotonic() < deadline, "the new endpoint does not answer"
        time.sleep(0.2)
    assert traffic.model_errors == 0
    assert "version 1" in _show(service)


def test_a_broken_challenger_is_rolled_back_by_its_alarm(service: Service, traffic: Traffic) -> None:
    # WHEN a challenger that fails half its predictions is trained
    _train(service, 2, "--inject-model-errors", "0.5")
    # THEN while it awaits review it shadows the champion: its failures show in the report, never to callers
    report = _shadow_report(service, lambda r: r["shadow"]["failures"] >= 5)
    assert report["shadow_package"].endswith("/2") and report["production"]["failures"] == 0
    assert traffic.model_errors == 0
    assert "shadow     Shadow-v2" in _show(service)
    # WHEN it is approved all the same, and deployed under the canary
    _approve(service, 2)
    # THEN the error-rate alarm fired, the deployment was rolled back, and the champion serves again
    outcome = _outcome(service, 2)
    assert outcome.startswith("rolled_back") and "alarm" in outcome, outcome
    endpoint = _endpoint(service)
    assert endpoint["EndpointStatus"] == "InService"
    assert "Rolled back: alarm" in endpoint.get("FailureReason", ""), endpoint
    assert traffic.model_errors > 0  # the canary's share of traffic did meet the broken model
    shown = _show(service)
    assert "version 1" in shown and "Rolled back: alarm" in shown
    errors = traffic.model_errors
    time.sleep(3)
    assert traffic.model_errors == errors  # the champion alone serves: no more model errors
    assert _metadata(service, 2)["fault_injection"] == "model_error_rate=0.5"


def test_a_good_challenger_completes_its_canary(service: Service, traffic: Traffic) -> None:
    # GIVEN the rollback's errors have aged out of the alarm's window
    _alarms_quiet(service)
    errors = traffic.model_errors
    # WHEN a good challenger is trained, THEN its shadow agrees with the champion on live requests
    _train(service, 3)
    report = _shadow_report(service, lambda r: r["shadow_package"].endswith("/3") and r["rows"] >= 30)
    assert report["agreement"] > 0.9 and report["shadow"]["failures"] == 0
    # WHEN the reviewer approves it
    _approve(service, 3)
    # THEN it completed its canary: it serves all traffic, and its package says it was deployed
    assert _outcome(service, 3) == "deployed"
    shown = _show(service)
    assert "version 3" in shown and "shadow " not in shown, shown
    assert traffic.model_errors == errors
    assert "fault_injection" not in _metadata(service, 3)
