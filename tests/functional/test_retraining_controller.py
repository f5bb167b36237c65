"""The retraining controller against moto: guards in order (single flight, cooldown, daily budget, new
labelled rows), a storm of concurrent findings starting one run, findings waiting for rows, recoveries
withdrawing them, redelivered uploads counted once, the run's input and its lineage."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from mlcycle import aws
from mlcycle import lineage as lin
from mlcycle.config import RetrainingSettings, Settings
from mlcycle.local.awslambda.invocations import LambdaContext
from mlcycle.pipeline_runs import PipelineInput, RecentWindow
from mlcycle.retraining import controller as rc
from mlcycle.retraining.state import status
from tests.utils import REGION, atomic_requests, make_key_table

TABLE, BUS, LINEAGE = "retraining", "mlcycle-bus", "lineage"
START = datetime(2031, 3, 4, 10, 0, tzinfo=UTC)
Fingerprint = Callable[[dict[str, Any], Settings], str | None]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    settings: Settings
    platform: rc.Platform
    clock: Clock
    sqs: Any
    queue: str
    exported: list[dict[str, Any]] = field(default_factory=list)
    window: RecentWindow | None = None

    def controller(self, fingerprint: Fingerprint | None = None, **policy: Any) -> rc.Controller:
        settings = self.settings
        if policy:
            retraining = settings.retraining.model_copy(update=policy)
            settings = settings.model_copy(update={"retraining": retraining})
        return rc.Controller(
            settings,
            self.platform,
            clock=self.clock,
            export_window=self._export,
            fingerprint=fingerprint or (lambda event, _: f"fp-{event['detail'].get('endpoint')}"),
        )

    def _export(self, settings: Settings, **kwargs: Any) -> RecentWindow | None:
        self.exported.append(kwargs)
        return self.window

    def handle(self, event: dict[str, Any], **policy: Any) -> rc.Decision:
        return self.controller(**policy).handle(event)

    def executions(self, status: str | None = None) -> list[dict[str, Any]]:
        sfn = self.platform.stepfunctions
        found = sfn.list_executions(
            stateMachineArn=self.platform.state_machine, **({"statusFilter": status} if status else {})
        )
        return list(found["executions"])

    def stop_all(self) -> None:
        for execution in self.executions("RUNNING"):
            self.platform.stepfunctions.stop_execution(executionArn=execution["executionArn"])

    def published(self) -> list[dict[str, Any]]:
        out = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                out.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return out

    def status(self) -> dict[str, Any]:
        p = self.platform
        return status(
            self.settings, dynamodb=p.dynamodb, table=p.table, stepfunctions=p.stepfunctions, now=self.clock()
        )


def _policy() -> RetrainingSettings:
    return RetrainingSettings(
        min_new_labelled_rows=500, cooldown_minutes=360, max_runs_per_day=3, lock_minutes=240
    )


@pytest.fixture
def world(settings: Settings, moto_aws: None) -> Iterator[World]:
    """The controller's table, our bus (its events land in a queue), a Pass state machine, a lineage table."""
    session = boto3.session.Session(region_name=REGION)
    dynamodb, sfn, events = (
        atomic_requests(session.client(n)) for n in ("dynamodb", "stepfunctions", "events")
    )
    sqs, s3 = session.client("sqs"), session.client("s3")
    make_key_table(dynamodb, TABLE)
    make_key_table(dynamodb, LINEAGE)
    events.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName="bus")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["mlcycle"]}))
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    definition = {"StartAt": "Train", "States": {"Train": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(
        name="training",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/states",
    )["stateMachineArn"]
    platform = rc.Platform(
        dynamodb=dynamodb,
        stepfunctions=sfn,
        events=events,
        s3=s3,
        table=TABLE,
        state_machine=machine,
        event_bus=BUS,
        lineage_table=LINEAGE,
        monitor_table="monitor-state",
        monitoring_bucket="monitor-data",
        artifacts_bucket="artifacts",
    )
    yield World(settings.model_copy(update={"retraining": _policy()}), platform, Clock(START), sqs, queue)


def finding(kind: str = "DriftDetected", endpoint: str = "churn-endpoint", id: str = "") -> dict[str, Any]:
    detail = {
        "endpoint": endpoint,
        "model_version": 3,
        "window_id": "2031-03-04T09:00:00Z",
        "finding": kind,
        "report_uri": f"s3://monitoring/reports/{endpoint}/report.html",
        "worst": [],
    }
    return _event(kind, detail, id)


def upload(settings: Settings, rows: int, id: str = "") -> dict[str, Any]:
    detail = {
        "upload_id": f"u-{rows}",
        "dataset": settings.problem.dataset.name,
        "source": "s3://landing/uploads/churn/batch.csv",
        "rows": rows,
        "curated_rows": rows,
        "quarantined_rows": 0,
    }
    # The example's feature views provide the problem's features: rows count once their features are in.
    return _event("FeaturesIngested", detail, id)


def scheduled(id: str = "") -> dict[str, Any]:
    return {
        "id": id or str(uuid.uuid4()),
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "time": START.isoformat(),
        "detail": {},
    }


def _event(kind: str, detail: dict[str, Any], id: str) -> dict[str, Any]:
    return {
        "id": id or str(uuid.uuid4()),
        "source": "mlcycle",
        "detail-type": kind,
        "time": START.isoformat(),
        "detail": detail,
    }


def _types(published: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in published if e["detail-type"] == kind]


def test_a_storm_of_concurrent_findings_starts_exactly_one_run(world: World) -> None:
    # GIVEN enough new labelled rows
    world.handle(upload(world.settings, 800))
    storm = [finding(id=f"drift-{i}") for i in range(100)]
    # AND the first 8 invocations all read the state before any of them claims a run (the race at its
    # worst: each of them finds every guard passing)
    gate, first_wave, count = threading.Barrier(8, timeout=30), threading.Lock(), [0]

    def fingerprint(event: dict[str, Any], settings: Settings) -> str:
        with first_wave:
            count[0] += 1
            wait = count[0] <= 8
        if wait:
            gate.wait()
        return "fp"

    # WHEN 100 DriftDetected events arrive at once, from 8 concurrent invocations
    with ThreadPoolExecutor(max_workers=8) as pool:
        decisions = list(pool.map(lambda e: world.controller(fingerprint).handle(e), storm))
    # THEN one run started, every other event was deferred by single flight (or the cooldown)
    started = [d for d in decisions if d.action == "started"]
    assert len(started) == 1
    assert len(world.executions()) == 1
    assert world.executions()[0]["name"] == started[0].execution_name
    deferred = [d for d in decisions if d.action == "deferred"]
    assert len(deferred) == 99
    assert {d.guard for d in deferred} <= {"single_flight", "cooldown"}
    # AND the bus heard one RetrainingStarted, and each deferral only once (not once per event)
    published = world.published()
    assert len(_types(published, "RetrainingStarted")) == 1
    assert 1 <= len(_types(published, "RetrainingDeferred")) <= 2
    assert world.status()["runs_today"] == 1


def test_a_finding_without_enough_rows_waits_for_the_upload_that_completes_them(world: World) -> None:
    # GIVEN 200 new labelled rows (500 needed)
    counted = world.handle(upload(world.settings, 200))
    assert counted.action == "counted"
    # WHEN drift is detected: it waits
    waiting = world.handle(finding(id="drift-1"))
    assert (waiting.action, waiting.guard, waiting.pending) == ("deferred", "new_rows", True)
    assert "200 since the last run started, 500 needed" in waiting.reason
    assert [p["type"] for p in world.status()["pending"]] == ["DriftDetected"]
    assert world.executions() == []
    # WHEN an upload brings the rows to 500
    world.clock.advance(hours=2)
    decision = world.handle(upload(world.settings, 300, id="upload-2"))
    # THEN the waiting finding's run starts, and its reason says both why and what completed it
    assert decision.action == "started"
    assert "DriftDetected on churn-endpoint" in decision.reason
    assert "upload u-300" in decision.reason and "500" in decision.reason
    payload = PipelineInput.model_validate_json(
        world.platform.stepfunctions.describe_execution(executionArn=decision.execution_arn)["input"]
    )
    assert payload.trigger is not None
    assert (payload.trigger.type, payload.trigger.event_id) == ("DriftDetected", "drift-1")
    # AND the waiting finding is answered; the rows count again from zero
    after = world.status()
    assert after["pending"] == [] and after["new_rows"] == 0
    published = world.published()
    deferred = _types(published, "RetrainingDeferred")
    assert [e["detail"]["guard"] for e in deferred] == ["new_rows"]
    assert len(_types(published, "RetrainingStarted")) == 1


def test_a_recovery_withdraws_the_waiting_finding(world: World) -> None:
    # GIVEN drift waiting for rows
    world.handle(upload(world.settings, 100))
    assert world.handle(finding()).pending
    # WHEN the drift recovers
    cleared = world.handle(finding("DriftRecovered"))
    # THEN nothing waits, and the rows that arrive later start nothing
    assert cleared.action == "cleared"
    assert world.status()["pending"] == []
    later = world.handle(upload(world.settings, 1000))
    assert later.action == "counted"
    assert world.executions() == []


def test_a_flapping_finding_starts_one_run_within_the_cooldown(world: World) -> None:
    world.handle(upload(world.settings, 1000))
    # WHEN drift is detected, recovers and is detected again, twice over, within the cooldown
    first = world.handle(finding(id="d1"))
    world.clock.advance(minutes=20)
    world.handle(finding("DriftRecovered"))
    world.clock.advance(minutes=20)
    again = world.handle(finding(id="d2"))
    world.stop_all()  # the run ended: single flight no longer holds, the cooldown still does
    world.handle(upload(world.settings, 1000))
    world.clock.advance(minutes=20)
    world.handle(finding("DriftRecovered"))
    third = world.handle(finding(id="d3"))
    # THEN only the first started a run
    assert first.action == "started"
    assert (again.action, again.guard) == ("deferred", "single_flight")
    assert (third.action, third.guard) == ("deferred", "cooldown")
    assert third.retry_after == (START + timedelta(minutes=360)).isoformat()
    assert len(world.executions()) == 1


def test_the_daily_budget(world: World) -> None:
    policy = {"cooldown_minutes": 0, "max_runs_per_day": 2}
    decisions = []
    for _ in range(3):
        decisions.append(world.handle(scheduled(), **policy))
        world.stop_all()
        world.clock.advance(minutes=30)
    # THEN two runs started; the third was refused until the next UTC day
    assert [d.action for d in decisions] == ["started", "started", "deferred"]
    assert decisions[2].guard == "budget"
    assert decisions[2].retry_after == "2031-03-05T00:00:00+00:00"
    assert "2 of 2 runs started today" in decisions[2].reason
    world.clock.now = datetime(2031, 3, 5, 0, 1, tzinfo=UTC)
    assert world.handle(scheduled(), **policy).action == "started"
    assert len(world.executions()) == 3


def test_the_lock_frees_when_its_execution_ends_yet_the_cooldown_holds(world: World) -> None:
    world.handle(upload(world.settings, 600))
    started = world.handle(finding(id="first"))
    lock = world.status()["lock"]
    assert lock["execution_name"] == started.execution_name
    assert lock["execution_status"] == "RUNNING"
    world.clock.advance(minutes=30)
    assert world.handle(scheduled()).guard == "single_flight"
    # WHEN the run ends (stopped) before the lock expires
    world.platform.stepfunctions.stop_execution(executionArn=started.execution_arn)
    world.clock.advance(minutes=30)
    # THEN single flight passes, but the cooldown refuses, then passes once it elapsed
    held = world.handle(scheduled())
    assert (held.action, held.guard) == ("deferred", "cooldown")
    world.clock.advance(minutes=301)
    second = world.handle(scheduled())
    assert second.action == "started"
    assert world.status()["lock"]["execution_name"] == second.execution_name


def test_an_execution_started_by_hand_holds_single_flight(world: World) -> None:
    sfn = world.platform.stepfunctions
    sfn.start_execution(stateMachineArn=world.platform.state_machine, name="by-hand", input="{}")
    decision = world.handle(scheduled())
    assert (decision.action, decision.guard) == ("deferred", "single_flight")
    assert "by-hand" in decision.reason


def test_the_run_input_carries_the_trigger_and_the_recent_window(world: World) -> None:
    world.window = RecentWindow(uri="s3://artifacts/recent-windows/x.parquet", rows=420, windows=6)
    world.handle(upload(world.settings, 500))
    decision = world.handle(finding(id="drift-7"))
    execution = world.platform.stepfunctions.describe_execution(executionArn=decision.execution_arn)
    payload = PipelineInput.model_validate_json(execution["input"])
    assert payload.dataset == world.settings.problem.dataset.name
    assert payload.trigger is not None and payload.recent_window is not None
    assert payload.trigger.type == "DriftDetected"
    assert payload.trigger.event_id == "drift-7"
    assert payload.trigger.endpoint == "churn-endpoint"
    assert payload.trigger.model_version == 3
    assert payload.trigger.alert_fingerprint == "fp-churn-endpoint"
    assert payload.trigger.report_uri == "s3://monitoring/reports/churn-endpoint/report.html"
    assert payload.recent_window.rows == 420
    (call,) = world.exported
    assert call["key"] == f"recent-windows/{decision.execution_name}.parquet"
    assert (call["monitor_table"], call["monitoring_bucket"]) == ("monitor-state", "monitor-data")
    # AND the name is the decision's: retrain-<UTC minute>-<hash of the deciding event>
    assert decision.execution_name == rc.execution_name(START, "drift-7")
    assert decision.execution_name.startswith("retrain-203103041000-")
    started = _types(world.published(), "RetrainingStarted")[0]["detail"]
    assert started["execution_arn"] == decision.execution_arn
    assert started["trigger"]["event_id"] == "drift-7"


def test_without_recent_windows_the_run_has_no_window(world: World) -> None:
    decision = world.handle(scheduled(), recent_windows=0)
    execution = world.platform.stepfunctions.describe_execution(executionArn=decision.execution_arn)
    assert PipelineInput.model_validate_json(execution["input"]).recent_window is None
    assert world.exported == []


def test_a_redelivered_event_counts_and_starts_nothing_twice(world: World) -> None:
    # WHEN the same upload is delivered twice
    world.handle(upload(world.settings, 300, id="upload-1"))
    again = world.handle(upload(world.settings, 300, id="upload-1"))
    # THEN its rows counted once
    assert "redelivered" in again.reason
    assert world.status()["new_rows"] == 300
    # AND a redelivered finding whose run started resumes nothing
    world.handle(upload(world.settings, 300))
    first = world.handle(finding(id="drift-1"))
    repeat = world.handle(finding(id="drift-1"))
    assert first.action == repeat.action == "started"
    assert repeat.replayed and repeat.execution_name == first.execution_name
    assert len(world.executions()) == 1
    assert len(_types(world.published(), "RetrainingStarted")) == 1


def test_a_retried_invocation_resumes_the_run_it_claimed(world: World) -> None:
    # GIVEN an invocation that claimed a run and died before starting it
    controller = world.controller(min_new_labelled_rows=0)
    original = controller._start

    def crash(*args: Any) -> None:
        raise TimeoutError("the invocation died")

    controller._start = crash  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        controller.handle(scheduled(id="tick-1"))
    controller._start = original  # type: ignore[method-assign]
    assert world.executions() == []
    # WHEN Lambda retries the event: the claimed run starts, under the claimed name
    world.clock.advance(minutes=3)
    decision = controller.handle(scheduled(id="tick-1"))
    assert decision.action == "started"
    assert decision.execution_name == rc.execution_name(START, "tick-1")
    assert [e["name"] for e in world.executions()] == [decision.execution_name]


def test_lineage_links_the_trigger_to_the_run_and_its_model(world: World) -> None:
    world.handle(upload(world.settings, 500))
    decision = world.handle(finding(id="drift-9"))
    store = lin.LineageStore(LINEAGE, client=world.platform.dynamodb)
    trigger = store.artifact("trigger:drift-9")
    assert trigger is not None and trigger.type == "trigger"
    assert trigger.properties["type"] == "DriftDetected"
    assert trigger.properties["endpoint"] == "churn-endpoint"
    # WHEN the run's steps record themselves as they do (training set, then model)
    name = str(decision.execution_name)
    store.record(
        lin.Execution(lin.artifact_id(lin.BUILD_TRAINING_SET, name), lin.BUILD_TRAINING_SET),
        outputs=[lin.Artifact(lin.artifact_id(lin.TRAINING_SET, name), lin.TRAINING_SET)],
    )
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn-models/4"
    lin.record_model(
        store, training_job=f"{name}-train", training_set_id=name, model_package_arn=arn, metrics={}
    )
    # THEN the trigger leads to the model
    ids = _ids(store.trace("trigger:drift-9", "downstream"))
    assert f"build_training_set:{name}" in ids
    assert "model:churn-models/4" in ids


def _ids(node: lin.LineageNode) -> set[str]:
    return {node.id}.union(*(_ids(child) for child in node.children))


def test_the_handler_decides_from_its_environment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.retraining_controller import handler

    aws.client.cache_clear()
    for name, value in {
        "MLCYCLE_RETRAINING_TABLE": TABLE,
        "MLCYCLE_TRAINING_STATE_MACHINE": world.platform.state_machine,
        "MLCYCLE_EVENT_BUS": BUS,
    }.items():
        monkeypatch.setenv(name, value)
    try:
        counted = handler(upload(world.settings, 600, id="upload-1"), _context())
        decision = handler(finding(id="drift-1"), _context())
        scheduled_by_hand = handler({"trigger": "Schedule"}, _context())
    finally:
        aws.client.cache_clear()
    # THEN the handler returns each decision: rows counted, a run started, then single flight
    assert counted["action"] == "counted" and counted["new_rows"] == 600
    assert decision["action"] == "started"
    assert decision["trigger"]["type"] == "DriftDetected"
    assert (scheduled_by_hand["action"], scheduled_by_hand["guard"]) == ("deferred", "single_flight")
    assert scheduled_by_hand["event_id"] == "req-1"
    assert len(world.executions()) == 1


def _context() -> LambdaContext:
    return LambdaContext(
        function_name="retraining-controller",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:retraining-controller",
        memory_limit_in_mb=1024,
        aws_request_id="req-1",
        log_group_name="/aws/lambda/retraining-controller",
        log_stream_name="stream",
        deadline=time.monotonic() + 300,
    )


def test_rows_counted_before_a_run_started_by_hand_are_not_new(world: World) -> None:
    # GIVEN 800 labelled rows counted, then a training run started by hand (the first training)
    world.clock.now = datetime.now(UTC) - timedelta(minutes=5)
    world.handle(upload(world.settings, 800) | {"time": world.clock.now.isoformat()})
    sfn = world.platform.stepfunctions
    sfn.start_execution(stateMachineArn=world.platform.state_machine, name="by-hand", input="{}")
    world.stop_all()
    # WHEN drift is found after it
    world.clock.now = datetime.now(UTC) + timedelta(minutes=1)
    decision = world.handle(finding(id="drift-after-hand-run"))
    # THEN the rows that run already trained on are not new: the finding waits for new ones
    assert (decision.action, decision.guard, decision.pending) == ("deferred", "new_rows", True)
    assert "0 since the last run started" in decision.reason
    # AND an upload after the run counts
    later = upload(world.settings, 600, id="after") | {"time": world.clock.now.isoformat()}
    assert world.handle(later).action == "started"


def test_without_feature_views_validated_uploads_count(world: World) -> None:
    # GIVEN a problem whose training sets read the curated data alone
    world.settings = world.settings.model_copy(update={"feature_views": ()})
    validated = upload(world.settings, 800) | {"detail-type": "DatasetValidated"}
    # THEN a validated upload counts its rows, and a FeaturesIngested one is not what it waits for
    assert world.handle(validated).action == "counted"
    assert world.handle(upload(world.settings, 100, id="f")).action == "ignored"
    assert world.status()["new_rows"] == 800
