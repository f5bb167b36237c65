"""The alert router on in-process moto: storms, duplicates, silences, inhibition, resolved notifications,
Alertmanager's timers, failed deliveries, acknowledgements; and the Lambda handler."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import boto3
import pytest

from mlcycle import aws, runtime
from mlcycle.alert_settings import AlertChannel, AlertChannels, AlertGrouping
from mlcycle.alerting.model import DeliveryResult, Notification
from mlcycle.alerting.router import FlushResult, Router
from mlcycle.alerting.state import AlertStateError, AlertStore
from mlcycle.config import Settings
from mlcycle.local.awslambda.invocations import LambdaContext
from tests.utils import REGION, make_key_table

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CHANNELS = (
    AlertChannel(name="email", kind="sns"),
    AlertChannel(name="pager", kind="pagerduty", secret="pd"),
    AlertChannel(name="chat", kind="slack", secret="slack", send_resolved=False),
)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Atomic:
    """A DynamoDB client whose each request is atomic, as DynamoDB's are: moto in-process checks a
    condition and writes without a lock, so threads could interleave inside one request. Requests still
    interleave freely with each other, which is what the router's conditional writes must handle."""

    def __init__(self, client: Any) -> None:
        self._client, self._lock = client, threading.Lock()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if not callable(value) or name == "exceptions":
            return value

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return locked


@dataclass
class Outbox:
    """A fake deliverer: records every notification; channels in ``failing`` fail."""

    failing: set[str] = field(default_factory=set)
    sent: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, channel: AlertChannel, notification: Notification) -> DeliveryResult:
        with self.lock:
            self.sent.append(notification)
        if channel.name in self.failing:
            return DeliveryResult(channel.name, ok=False, attempts=4, status=503, error="HTTP 503")
        return DeliveryResult(channel.name, ok=True, attempts=1, status=200)

    def to(self, channel: str) -> list[Notification]:
        return [n for n in self.sent if n.channel == channel]


@dataclass
class World:
    settings: Settings
    store: AlertStore
    clock: Clock
    outbox: Outbox

    def router(self, **alerts: Any) -> Router:
        settings = self.settings
        if alerts:
            update = {k: v for k, v in alerts.items() if k != "grouping"}
            if "grouping" in alerts:
                update["grouping"] = alerts["grouping"]
            settings = settings.model_copy(update={"alerts": settings.alerts.model_copy(update=update)})
        return Router(settings, self.store, self.outbox, self.clock)


@pytest.fixture
def world(settings: Settings, moto_aws: None) -> World:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    make_key_table(dynamodb, "alerts")
    grouping = AlertGrouping(group_wait_seconds=30, group_interval_seconds=300, repeat_interval_seconds=3600)
    alerts = AlertChannels(channels=CHANNELS, grouping=grouping)
    clock = Clock()
    store = AlertStore("alerts", cast(Any, Atomic(dynamodb)), clock=clock)
    return World(settings.model_copy(update={"alerts": alerts}), store, clock, Outbox())


def event(
    detail_type: str, id: str, at: datetime = T0, *, endpoint: str = "", version: int = 3, **detail: Any
) -> dict[str, Any]:
    body = {
        "endpoint": endpoint or "mlcycle-dev-endpoint",
        "model_version": version,
        "window_id": at.isoformat(),
        "finding": "drift",
        "report_uri": "s3://monitoring/reports/w/report.html",
        "worst": [{"feature": "tenure", "test": "ks", "score": 0.4, "threshold": 0.1}],
    } | detail
    return {
        "id": id,
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "mlcycle",
        "detail-type": detail_type,
        "detail": body,
    }


def alarm(settings: Settings, state: str, id: str, at: datetime = T0) -> dict[str, Any]:
    return {
        "id": id,
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "region": REGION,
        "detail": {
            "alarmName": f"{settings.prefix}-slo-availability-page",
            "state": {"value": state, "reason": "burning"},
            "configuration": {"metrics": []},
        },
    }


def concurrently(calls: list[Callable[[], Any]], threads: int = 8) -> list[Any]:
    """Run the calls on ``threads`` threads, released together once all are queued, so that their reads
    and conditional writes interleave as concurrent Lambdas' would."""
    gate = threading.Event()

    def released(call: Callable[[], Any]) -> Any:
        gate.wait()
        return call()

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(released, call) for call in calls]
        gate.set()
        return [f.result() for f in futures]


def test_a_storm_of_drift_events_makes_one_page_per_channel(world: World) -> None:
    router = world.router()
    storm = [event("DriftDetected", f"drift-{i}", T0 + timedelta(seconds=i * 0.5)) for i in range(100)]
    results = concurrently([lambda e=e: router.receive(e) for e in storm])
    assert sorted({r.outcome for r in results}) == ["fired", "refreshed"]
    assert [r.outcome for r in results].count("fired") == 1
    assert concurrently([router.flush for _ in range(8)]) and world.outbox.sent == []  # group_wait
    world.clock.advance(31)
    flushed = concurrently([router.flush for _ in range(8)])
    assert sorted(n.channel for n in world.outbox.sent) == ["chat", "email", "pager"]
    assert all(len(n.alerts) == 1 and n.status == "firing" for n in world.outbox.sent)
    assert sum(len(f.sent) for f in flushed) == 3
    assert len(world.store.list_alerts(open_only=True)) == 1


def test_a_storm_without_group_wait_still_pages_once(world: World) -> None:
    router = world.router(grouping=AlertGrouping(group_wait_seconds=0))
    storm = [event("DriftDetected", f"drift-{i}") for i in range(100)]
    concurrently([lambda e=e: router.receive(e) for e in storm])
    assert sorted(n.channel for n in world.outbox.sent) == ["chat", "email", "pager"]


def test_a_duplicated_event_notifies_once(world: World) -> None:
    router = world.router(grouping=AlertGrouping(group_wait_seconds=0))
    drift = event("DriftDetected", "same-id")
    first, second = concurrently([lambda: router.receive(drift), lambda: router.receive(drift)], threads=2)
    assert sorted([first.outcome, second.outcome]) == ["duplicate", "fired"]
    assert router.receive(drift).duplicate
    world.clock.advance(3600 * 5)
    router.receive(drift)
    assert len(world.outbox.to("email")) == 1


def test_a_silence_holds_and_its_alert_notifies_once_it_ends(world: World) -> None:
    router = world.router()
    silence = world.store.add_silence({"alertname": "Drift"}, timedelta(hours=1), "known shift", "ana")
    router.receive(event("DriftDetected", "d1"))
    world.clock.advance(60)
    assert router.flush().sent == [] and world.outbox.sent == []
    assert [r.alert.name for r in world.store.list_alerts(open_only=True)] == ["Drift"]
    assert [s.id for s in world.store.silences()] == [silence]
    world.clock.advance(3600)
    assert world.store.silences() == [] and len(world.store.silences(active_only=False)) == 1
    router.flush()
    assert sorted(n.channel for n in world.outbox.sent) == ["chat", "email", "pager"]


def test_expiring_a_silence_by_hand(world: World) -> None:
    router = world.router()
    silence = world.store.add_silence(["alertname=~Dri.*"], timedelta(days=1), "deploying", "ana")
    router.receive(event("DriftDetected", "d1"))
    world.clock.advance(60)
    router.flush()
    assert world.outbox.sent == []
    assert world.store.expire_silence(silence).ends_at == world.clock.now
    router.flush()
    assert len(world.outbox.to("email")) == 1


def test_a_critical_alarm_inhibits_drift_on_its_endpoint(world: World) -> None:
    router = world.router()
    router.receive(alarm(world.settings, "ALARM", "a1"))
    router.receive(event("DriftDetected", "d1", endpoint=world.settings.endpoint_name))
    world.clock.advance(31)
    router.flush()
    assert {n.alerts[0].name for n in world.outbox.sent} == {"slo-availability-page"}
    # The endpoint is back: drift is notified, and the alarm's resolve goes out too.
    router.receive(alarm(world.settings, "OK", "a2", T0 + timedelta(seconds=40)))
    world.clock.advance(300)
    router.flush()
    told = {(n.alerts[0].name, n.status) for n in world.outbox.to("email")[1:]}
    assert told == {("slo-availability-page", "resolved"), ("Drift", "firing")}


def test_a_recovery_sends_a_resolved_notification(world: World) -> None:
    router = world.router()
    router.receive(event("DriftDetected", "d1", version=3))
    world.clock.advance(31)
    router.flush()
    # The next model version reports the recovery: it resolves the same alert.
    router.receive(event("DriftRecovered", "r1", T0 + timedelta(seconds=60), version=4, worst=[]))
    world.clock.advance(300)
    router.flush()
    pager = world.outbox.to("pager")
    assert [n.status for n in pager] == ["firing", "resolved"]
    assert pager[1].alerts[0].status == "resolved" and pager[1].alerts[0].ends_at == T0 + timedelta(
        seconds=60
    )
    assert len(world.outbox.to("chat")) == 1  # chat does not send resolved
    world.clock.advance(4000)
    router.flush()
    assert len(world.outbox.to("pager")) == 2  # the group forgot it
    assert world.store.list_alerts(open_only=True) == []


def test_a_late_or_unknown_recovery_is_ignored(world: World) -> None:
    router = world.router()
    assert router.receive(event("DriftRecovered", "r0")).outcome == "unknown"
    router.receive(event("DriftDetected", "d1", T0 + timedelta(minutes=5)))
    late = router.receive(event("DriftRecovered", "r1", T0 + timedelta(minutes=1)))
    assert late.outcome == "unknown"
    assert world.store.list_alerts(open_only=True)[0].alert.status == "firing"


def test_group_wait_interval_and_repeat(world: World) -> None:
    grouping = AlertGrouping(group_by=("endpoint",), group_wait_seconds=30, repeat_interval_seconds=3600)
    router = world.router(grouping=grouping)
    router.receive(event("DriftDetected", "d1"))
    world.clock.advance(10)
    router.flush()
    assert world.outbox.to("email") == []
    world.clock.advance(21)  # T0 + 31: the group waited
    router.flush()
    assert [len(n.alerts) for n in world.outbox.to("email")] == [1]
    world.clock.advance(29)  # T0 + 60: a second alert joins the group
    router.receive(event("DataQualityViolated", "q1", world.clock.now))
    world.clock.advance(40)
    router.flush()
    assert len(world.outbox.to("email")) == 1  # within the group interval
    world.clock.advance(232)  # T0 + 332: 301 s after the last notification
    router.flush()
    update = world.outbox.to("email")[-1]
    assert len(world.outbox.to("email")) == 2 and {a.name for a in update.alerts} == {"Drift", "DataQuality"}
    assert not update.repeat
    world.clock.advance(3599)
    router.flush()
    assert len(world.outbox.to("email")) == 2
    world.clock.advance(2)
    router.flush()
    assert len(world.outbox.to("email")) == 3 and world.outbox.to("email")[-1].repeat


def test_a_failed_delivery_is_kept_and_retried_alone(world: World) -> None:
    router = world.router()
    world.outbox.failing = {"chat"}
    router.receive(event("DriftDetected", "d1"))
    world.clock.advance(31)
    result = router.flush()
    assert result.failed_channels == ["chat"] and not result.ok
    assert sorted(d.channel for d in result.sent) == ["email", "pager"]
    [failed] = world.store.failed_deliveries()
    assert (failed.channel, failed.state, failed.status, failed.error, failed.attempts) == (
        "chat",
        "failed",
        503,
        "HTTP 503",
        4,
    )
    world.clock.advance(30)
    assert router.flush() == FlushResult()  # backing off
    world.outbox.failing = set()
    world.clock.advance(31)
    retried = router.flush()
    assert [d.channel for d in retried.sent] == ["chat"] and retried.ok
    assert [n.channel for n in world.outbox.sent].count("email") == 1
    assert len(world.outbox.to("chat")) == 2 and world.store.failed_deliveries() == []
    assert world.outbox.to("chat")[1].alerts == world.outbox.to("chat")[0].alerts


def test_a_delivery_failing_every_try_is_given_up_and_listed(world: World) -> None:
    router = Router(world.settings, world.store, world.outbox, world.clock, retry_limit=2)
    world.outbox.failing = {"pager"}
    router.receive(event("DriftDetected", "d1"))
    world.clock.advance(31)
    assert router.flush().failed_channels == ["pager"]
    world.clock.advance(61)
    assert router.flush().failed_channels == ["pager"]
    world.clock.advance(600)  # past any backoff, before the repeat
    assert router.flush().failed == []
    [given_up] = world.store.failed_deliveries()
    assert (given_up.state, given_up.tries) == ("given_up", 2)


def test_ack_stops_repeats_and_a_manual_resolve_notifies(world: World) -> None:
    router = world.router()
    router.receive(event("DriftDetected", "d1"))
    world.clock.advance(31)
    router.flush()
    [record] = world.store.list_alerts(open_only=True)
    acked = world.store.ack(record.fingerprint[:8], "ana")
    assert acked.acked_by == "ana" and acked.notes[-1]["text"] == "acknowledged by ana"
    world.clock.advance(3601)
    router.flush()
    assert len(world.outbox.to("email")) == 1
    resolved = world.store.resolve(record.fingerprint[:8], "ana")
    assert resolved.alert.status == "resolved" and resolved.resolved_by == "ana"
    router.flush()
    assert [n.status for n in world.outbox.to("email")] == ["firing", "resolved"]
    with pytest.raises(AlertStateError):
        world.store.ack(record.fingerprint, "bob")


def test_a_retraining_run_joins_the_alerts_thread(world: World) -> None:
    router = world.router()
    fired = router.receive(event("DriftDetected", "d1"))
    trigger = {
        "type": "DriftDetected",
        "reason": "drift on 60% of features",
        "alert_fingerprint": fired.fingerprint,
    }
    started = {
        "id": "rs1",
        "time": "2025-03-01T12:05:00Z",
        "source": "mlcycle",
        "detail-type": "RetrainingStarted",
        "detail": {"trigger": trigger, "execution_arn": "arn:aws:states:exec"},
    }
    assert router.receive(started).outcome == "noted"
    record = world.store.get(str(fired.fingerprint))
    assert record.notes[0]["text"] == "retraining started (DriftDetected): drift on 60% of features"
    assert record.alert.links["execution"] == "arn:aws:states:exec"
    # Later reports of the finding keep the thread's link.
    router.receive(event("DriftDetected", "d2", T0 + timedelta(minutes=10)))
    assert world.store.get(str(fired.fingerprint)).alert.links["execution"] == "arn:aws:states:exec"


# -- the Lambda handler --------------------------------------------------------------------------


def _context() -> LambdaContext:
    return LambdaContext(
        function_name="route-alert",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:route-alert",
        memory_limit_in_mb=512,
        aws_request_id="req-1",
        log_group_name="/aws/lambda/route-alert",
        log_stream_name="stream",
        deadline=time.monotonic() + 300,
    )


@pytest.fixture
def deployed(settings: Settings, moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    make_key_table(dynamodb, "alerts")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    monkeypatch.setenv("MLCYCLE_ALERT_TABLE", "alerts")
    monkeypatch.setenv("MLCYCLE_ALERTS_TOPIC", topic)
    alerts = AlertChannels(grouping=AlertGrouping(group_wait_seconds=0), max_attempts=1)
    aws.client.cache_clear()
    with runtime.supplied_settings(settings.model_copy(update={"alerts": alerts})):
        yield {"dynamodb": dynamodb, "topic": topic}
    aws.client.cache_clear()


def test_the_handler_routes_an_event_and_flushes_on_schedule(deployed: dict[str, Any]) -> None:
    from functions.route_alert import handler

    now = datetime.now(UTC)
    out = handler(event("DriftDetected", "h1", now), _context())
    assert out["outcome"] == "fired" and len(out["sent"]) == 1
    assert handler(event("DriftDetected", "h1", now), _context())["outcome"] == "duplicate"
    scheduled = {"id": "s1", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    assert handler(scheduled, _context()) == {"sent": [], "failed": []}


def test_the_handler_fails_naming_the_channels_it_could_not_reach(
    deployed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.route_alert import handler
    from mlcycle.alerting.router import DeliveryFailedError

    monkeypatch.setenv("MLCYCLE_ALERTS_TOPIC", deployed["topic"] + "-gone")
    with pytest.raises(DeliveryFailedError, match="email"):
        handler(event("DriftDetected", "h2", datetime.now(UTC)), _context())
    store = AlertStore("alerts", deployed["dynamodb"])
    assert [d.channel for d in store.failed_deliveries()] == ["email"]
