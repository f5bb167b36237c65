"""What the embedded AWS's background work loses is kept where ``mlcycle local status`` shows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlcycle.local import context, daemon, faults
from mlcycle.local.cloudwatch import emf
from mlcycle.local.cloudwatch.composite import CompositeEvaluator
from mlcycle.local.context import LocalContext
from mlcycle.local.sagemaker import endpoints
from mlcycle.names import ENDPOINT_STATE_CHANGE


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[LocalContext]:
    """A running embedded AWS as far as the fault record is concerned: its work directory."""
    running = LocalContext(endpoint_url="http://127.0.0.1:1", region="us-east-1", work_dir=tmp_path)
    context.activate(running)
    yield running
    context.deactivate(running)


def _refuse(*_: Any, **__: Any) -> None:
    raise ValueError("event was rejected")


def test_an_endpoint_state_change_that_cannot_be_put_is_kept_as_a_fault(
    ctx: LocalContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the bus refuses events
    monkeypatch.setattr(endpoints, "put_platform_event", _refuse)
    endpoint = SimpleNamespace(
        endpoint_name="churn",
        arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/churn",
        endpoint_config_name="churn-v2",
        endpoint_status="InService",
        failure_reason=None,
    )
    # WHEN the endpoint's new state is announced (its deployment outcome hangs on that event)
    endpoints.announce(SimpleNamespace(ctx=ctx), endpoint)  # type: ignore[arg-type]
    # THEN the loss is kept, naming the event, the endpoint and the error
    [fault] = faults.read(ctx.work_dir)
    assert ENDPOINT_STATE_CHANGE in fault.what and "churn (InService)" in fault.what
    assert fault.error == "ValueError: event was rejected"


def test_an_emf_datapoint_that_is_not_stored_is_kept_as_a_fault(
    ctx: LocalContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN CloudWatch refuses the datapoint
    from moto.cloudwatch.models import cloudwatch_backends

    backend = cloudwatch_backends[ctx.account][ctx.region]
    monkeypatch.setattr(backend, "put_metric_data", _refuse)
    line = (
        '{"_aws": {"Timestamp": 1764324000000, "CloudWatchMetrics": [{"Namespace": "mlcycle/monitoring", '
        '"Dimensions": [["endpoint"]], "Metrics": [{"Name": "drift"}]}]}, "endpoint": "e1", "drift": 0.5}'
    )
    # WHEN an invocation's log is turned into metrics
    emf.publish(ctx.account, ctx.region, line)
    # THEN the lost datapoint is kept
    [fault] = faults.read(ctx.work_dir)
    assert fault.what == "EMF datapoint drift in mlcycle/monitoring was not stored"


def test_a_composite_alarm_that_cannot_be_read_is_a_fault_once(ctx: LocalContext) -> None:
    # GIVEN a composite alarm whose rule does not parse (PutCompositeAlarm refuses these; another way in)
    alarm = SimpleNamespace(name="slo", rule="ALARM(", state_value="OK")
    evaluator = CompositeEvaluator(
        SimpleNamespace(alarms={"slo": alarm}), put_event=lambda *_: None, publish=lambda *_: None
    )
    # WHEN it is evaluated on two ticks
    evaluator.evaluate()
    evaluator.evaluate()
    # THEN it is reported once: it is never evaluated
    [fault] = faults.read(ctx.work_dir)
    assert fault.what == "composite alarm slo is never evaluated"


def test_status_lists_the_faults_and_exits_1(ctx: LocalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a running embedded AWS that lost an event
    state = {"pid": 1, "endpoint_url": ctx.endpoint_url, "work_dir": str(ctx.work_dir), "platform": {}}
    monkeypatch.setattr(daemon, "read_state", lambda: state)
    faults.record("SageMaker Training Job State Change of job-1 was not put", ValueError("rejected"))
    said: list[str] = []
    # WHEN its status is asked for
    code = daemon.status(say=said.append)
    # THEN the fault is listed in the one JSON document, and the exit code says something was lost
    assert code == 1
    (document,) = said
    listed = json.loads(document)["faults"]
    assert listed["count"] == 1 and listed["file"].endswith("faults.jsonl")
    assert listed["newest"][0]["what"] == "SageMaker Training Job State Change of job-1 was not put"
    assert listed["newest"][0]["error"] == "ValueError: rejected"


def test_status_without_faults_says_none(ctx: LocalContext, monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"pid": 1, "endpoint_url": ctx.endpoint_url, "work_dir": str(ctx.work_dir), "platform": {}}
    monkeypatch.setattr(daemon, "read_state", lambda: state)
    said: list[str] = []
    assert daemon.status(say=said.append) == 0
    assert json.loads(said[-1])["faults"] == {"count": 0, "newest": []}
