"""The closed loop end to end on the embedded AWS, as `make demo` runs it (mlcycle.commands.closed_loop):

drifted traffic with its labels -> the scheduled monitors find drift and degraded quality -> the alert
router pages PagerDuty and posts to Slack (the embedded AWS's webhook sink) -> the retraining controller
waits for new labelled rows; the labelled batch that arrives starts a training run with the trigger in its
input -> the challenger beats the champion on the recent labelled window, passes its canary and serves ->
the next windows recover -> PagerDuty gets the resolve and Slack the resolved message.

Nothing in the test tells the platform what to decide: it sends traffic, uploads data and watches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlcycle.application import cycle
from mlcycle.commands.closed_loop import PAGERDUTY, SLACK, ClosedLoop, Timeline
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.local.session import LocalPlatform, local_platform
from mlcycle.local.webhooks import WebhookSink
from tests.assembly import app_settings
from tests.e2e.helpers import curate, run_training

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(settings: Settings, assembly: Path) -> Iterator[tuple[LocalPlatform, WebhookSink]]:
    """A platform whose first model serves, and the webhook sink its Slack and PagerDuty channels use."""
    with local_platform(settings, assembly) as local, WebhookSink() as sink:
        curate(local, settings, churn.generate(3000, seed=11), "loop")
        run = run_training(local)
        assert run.status == "SUCCEEDED", (run.error, run.cause)
        cycle.wait_for_endpoint(local.clients, settings, lambda _m: None)
        yield local, sink


@pytest.fixture(scope="module")
def loop(served: tuple[LocalPlatform, WebhookSink]) -> tuple[ClosedLoop, Timeline, list[str]]:
    local, sink = served
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        print(line, flush=True)  # shown with the test's output when it fails

    # The settings the assembly was synthesized with: its Slack and PagerDuty channels' secrets.
    closed = ClosedLoop(local, app_settings(), sink, say)
    timeline = closed.run()
    return closed, timeline, said


def _bodies(sink: WebhookSink, path: str) -> list[dict[str, Any]]:
    return [r.body for r in sink.requests(path) if isinstance(r.body, dict)]


def test_the_loop_runs_from_drift_to_resolved(loop: tuple[ClosedLoop, Timeline, list[str]]) -> None:
    _, timeline, said = loop
    marks = [what for _, what in timeline.marks]
    order = [
        "drifted traffic",
        "PagerDuty triggered",
        "Slack message",
        "curated",
        "started a training run",
        "registered",
        "serves",
        "PagerDuty resolved",
        "Slack resolved",
    ]
    positions = [next(i for i, m in enumerate(marks) if step in m) for step in order]
    assert positions == sorted(positions), marks
    assert "\n".join(timeline.lines()), said


def test_each_alert_pages_once_and_resolves_once(
    loop: tuple[ClosedLoop, Timeline, list[str]], served: tuple[LocalPlatform, WebhookSink]
) -> None:
    _, sink = served

    def settled() -> list[dict[str, Any]] | None:
        """The pages once every trigger has its resolve (a delivery that failed is retried later)."""
        pages = _bodies(sink, PAGERDUTY)
        actions = {
            a: {p["dedup_key"] for p in pages if p["event_action"] == a} for a in ("trigger", "resolve")
        }
        return pages if actions["trigger"] and actions["trigger"] <= actions["resolve"] else None

    try:
        pages = cycle.wait_for("every page resolved", settled, timeout=120, interval=1)
    except cycle.CycleError:
        pages = _bodies(sink, PAGERDUTY)
    triggers = [p["dedup_key"] for p in pages if p["event_action"] == "trigger"]
    resolves = [p["dedup_key"] for p in pages if p["event_action"] == "resolve"]
    # THEN every alert was triggered once (however many windows found it), and each one resolved
    assert triggers and len(triggers) == len(set(triggers)), pages
    assert set(resolves) == set(triggers), [
        (p["event_action"], p["dedup_key"][:12], p.get("payload", {}).get("summary")) for p in pages
    ]
    assert all(p["routing_key"] == "demo-routing-key" for p in pages)
    slack = [str(b.get("text", "")) for b in _bodies(sink, SLACK)]
    assert any("RESOLVED" in t.upper() for t in slack) and any("RESOLVED" not in t.upper() for t in slack)


def test_the_retraining_run_names_its_trigger_and_is_judged_on_recent_data(
    loop: tuple[ClosedLoop, Timeline, list[str]], served: tuple[LocalPlatform, WebhookSink]
) -> None:
    local, _ = served
    sfn = local.clients.sfn
    executions = sfn.list_executions(stateMachineArn=local.platform.training_state_machine)["executions"]
    retrained = [
        json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in executions
    ]
    triggered = [i for i in retrained if i.get("trigger")]
    # THEN exactly one run was started by the controller, for a monitor finding, with the recent window
    assert len(triggered) == 1, retrained
    (run,) = triggered
    assert run["trigger"]["type"] in ("DriftDetected", "ModelQualityDegraded"), run
    assert run.get("recent_window") and run["recent_window"]["rows"] > 0, (run, _decisions(local))


def _decisions(local: LocalPlatform) -> list[dict[str, Any]]:
    """The retraining controller's recorded decisions (their notes say why a window was not exported)."""
    table = local.platform.retraining_table
    items = local.clients.dynamodb.scan(TableName=table).get("Items", []) if table else []
    return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]
