"""Delivering notifications (mlcycle.alerting.delivery) to a real HTTP receiver, the embedded AWS's
webhook sink (mlcycle.local.webhooks), and to SNS and Secrets Manager on in-process moto: retries,
Retry-After, what is not retried, and secrets that never reach a log or a result."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from mlcycle.alert_settings import AlertChannel, AlertChannels
from mlcycle.alerting import channels
from mlcycle.alerting.delivery import Deliverer, backoff, parse_retry_after
from mlcycle.alerting.model import Alert, Notification
from mlcycle.local.webhooks import WebhookSink
from tests.utils import REGION

ROUTING_KEY = "R0uT1nGkEy" * 3 + "zz"
SLACK_TOKEN = "T0000/B0000/XXXXsecretXXXX"
CHANNELS = AlertChannels(
    channels=(
        AlertChannel(name="email", kind="sns"),
        AlertChannel(name="slack", kind="slack", secret="mlcycle/slack"),
        AlertChannel(name="pager", kind="pagerduty", secret="mlcycle/pagerduty"),
        AlertChannel(name="teams", kind="teams", secret="mlcycle/teams"),
        AlertChannel(name="hook", kind="webhook", secret="mlcycle/hook"),
    ),
    runbook_url="https://wiki.example.com/runbook",
    max_attempts=3,
)


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as running:
        yield running


@pytest.fixture
def secrets(sink: WebhookSink) -> dict[str, str]:
    return {
        "mlcycle/slack": sink.url(f"/services/{SLACK_TOKEN}"),
        "mlcycle/pagerduty": json.dumps({"routing_key": ROUTING_KEY, "events_url": sink.url("/v2/enqueue")}),
        "mlcycle/teams": json.dumps({"url": sink.url("/teams")}),
        "mlcycle/hook": sink.url("/hook"),
    }


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def deliverer(secrets: dict[str, str], waits: list[float]) -> Deliverer:
    return Deliverer(CHANNELS, sns=None, topic_arn=None, secrets=secrets.__getitem__, sleep=waits.append)


def drift(fingerprint: str = "fp-drift", status: str = "firing") -> Alert:
    return Alert(
        fingerprint=fingerprint,
        status=status,  # type: ignore[arg-type]
        labels={"alertname": "DriftDetected", "category": "model", "severity": "critical", "endpoint": "ep"},
        summary="Drift on ep (model v3)",
        description="3 of 5 features drifted.",
        starts_at=datetime(2025, 3, 1, tzinfo=UTC),
        details=[{"feature": "age", "test": "ks", "score": 0.4, "threshold": 0.1}],
    )


def group(*alerts: Alert) -> Notification:
    return Notification(
        channel="x", group_key="g", group_labels={"alertname": "DriftDetected"}, alerts=alerts
    )


SLACK_PATH = f"/services/{SLACK_TOKEN}"


# Retries -----------------------------------------------------------------------------------------------


def test_slack_429_waits_what_retry_after_says_then_delivers(
    deliverer: Deliverer, sink: WebhookSink, waits: list[float]
) -> None:
    sink.script(SLACK_PATH, (429, {"Retry-After": "2"}))
    result = deliverer.deliver(CHANNELS.channel("slack"), group(drift()))
    assert (result.ok, result.attempts, result.status, result.error) == (True, 2, 200, None)
    assert waits == [2.0]
    first, second = sink.requests(SLACK_PATH)
    assert first.body == second.body and first.body["blocks"][0]["type"] == "header"


def test_retry_after_as_an_http_date(deliverer: Deliverer, sink: WebhookSink, waits: list[float]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    sink.script("/hook", (429, {"Retry-After": when}))
    assert deliverer.deliver(CHANNELS.channel("hook"), group(drift())).ok
    (wait,) = waits
    assert 15 <= wait <= 20


def test_pagerduty_500_is_retried_with_backoff(
    deliverer: Deliverer, sink: WebhookSink, waits: list[float]
) -> None:
    sink.script("/v2/enqueue", (500, {}, "oops"))
    result = deliverer.deliver(CHANNELS.channel("pager"), group(drift("fp-1")))
    assert (result.ok, result.attempts, result.status) == (True, 2, 200)
    (wait,) = waits
    assert 0.5 <= wait <= 1.0  # the first backoff: base 1 s, half of it plus jitter
    bodies = [r.body for r in sink.requests("/v2/enqueue")]
    assert [(b["event_action"], b["dedup_key"], b["routing_key"]) for b in bodies] == [
        ("trigger", "fp-1", ROUTING_KEY)
    ] * 2


def test_pagerduty_400_is_not_retried_and_reported(
    deliverer: Deliverer, sink: WebhookSink, waits: list[float]
) -> None:
    body = json.dumps({"status": "invalid event", "message": "Event object is invalid", "pad": "p" * 1000})
    sink.script("/v2/enqueue", (400, {"Content-Type": "application/json"}, body))
    result = deliverer.deliver(CHANNELS.channel("pager"), group(drift()))
    assert (result.ok, result.attempts, result.status, waits) == (False, 1, 400, [])
    assert result.error == f"HTTP 400: {body[:500]}"


def test_pagerduty_sends_one_event_per_alert_and_names_the_one_that_failed(
    deliverer: Deliverer, sink: WebhookSink
) -> None:
    sink.script("/v2/enqueue", 200, (400, {}, "bad"))
    result = deliverer.deliver(
        CHANNELS.channel("pager"), group(drift("fp-a"), drift("fp-b", status="resolved"))
    )
    assert not result.ok and result.attempts == 2 and result.error == "alert fp-b: HTTP 400: bad"
    actions = [(r.body["event_action"], r.body["dedup_key"]) for r in sink.requests("/v2/enqueue")]
    assert actions == [("trigger", "fp-a"), ("resolve", "fp-b")]


def test_network_errors_are_retried_then_fail(secrets: dict[str, str], waits: list[float]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = {**secrets, "mlcycle/hook": f"http://127.0.0.1:{port}/hook/{SLACK_TOKEN}"}
    deliverer = Deliverer(CHANNELS, sns=None, topic_arn=None, secrets=closed.__getitem__, sleep=waits.append)
    result = deliverer.deliver(CHANNELS.channel("hook"), group(drift()))
    assert (result.ok, result.attempts, result.status) == (False, 3, None)
    assert result.error and result.error.startswith("network error: ConnectionRefusedError")
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    for attempt, ceiling in ((1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (10, 30)):
        assert ceiling / 2 <= backoff(attempt) <= ceiling
    assert parse_retry_after("100000") == 300.0 and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now


# Secrets -----------------------------------------------------------------------------------------------


def test_secrets_never_reach_logs_or_results(
    deliverer: Deliverer, sink: WebhookSink, secrets: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"no such hook {secrets['mlcycle/slack']} ({SLACK_TOKEN})"
    sink.script(SLACK_PATH, (503, {}, echo), (404, {}, echo))
    sink.script("/v2/enqueue", (400, {}, f"bad key {ROUTING_KEY} at {sink.url('/v2/enqueue')} ({echo})"))
    results = [
        deliverer.deliver(CHANNELS.channel("slack"), group(drift())),
        deliverer.deliver(CHANNELS.channel("pager"), group(drift())),
    ]
    assert [(r.ok, r.status) for r in results] == [(False, 404), (False, 400)]
    shown = caplog.text + repr(results)
    assert "no such hook" in shown  # the receiver's words are kept...
    for secret in (SLACK_TOKEN, ROUTING_KEY, secrets["mlcycle/slack"], secrets["mlcycle/pagerduty"]):
        assert secret not in shown  # ...not the secrets they echo


def test_a_secret_that_cannot_be_read_is_a_failed_result_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    def unreadable(name: str) -> str:
        raise KeyError(name)

    deliverer = Deliverer(CHANNELS, sns=None, topic_arn=None, secrets=unreadable, sleep=lambda _: None)
    result = deliverer.deliver(CHANNELS.channel("slack"), group(drift()))
    assert not result.ok and result.attempts == 0
    assert result.error and "cannot read secret 'mlcycle/slack'" in result.error
    assert "mlcycle/slack" in caplog.text


@pytest.mark.parametrize(
    ("channel", "value", "expected"),
    [
        ("slack", "not a url xyzzy", "does not hold an http(s) URL"),
        ("slack", '{"url": 3}', "does not hold an http(s) URL"),
        ("pager", '{"events_url": "https://e.example.com"}', "holds no routing key"),
        ("teams", '{"url": "https://x.example.com/', "is not valid JSON"),
    ],
)
def test_a_secret_that_holds_the_wrong_thing_is_named_not_quoted(
    channel: str, value: str, expected: str
) -> None:
    deliverer = Deliverer(CHANNELS, sns=None, topic_arn=None, secrets=lambda _: value, sleep=lambda _: None)
    result = deliverer.deliver(CHANNELS.channel(channel), group(drift()))
    assert not result.ok and result.error and expected in result.error
    assert value not in result.error


def test_a_plain_routing_key_goes_to_pagerdutys_endpoint(waits: list[float]) -> None:
    seen: list[str] = []
    deliverer = Deliverer(CHANNELS, sns=None, topic_arn=None, secrets=lambda n: seen.append(n) or ROUTING_KEY)
    target = deliverer._target(CHANNELS.channel("pager"))
    assert (target.url, target.routing_key, seen) == (
        "https://events.pagerduty.com/v2/enqueue",
        ROUTING_KEY,
        ["mlcycle/pagerduty"],
    )


# Teams and Alertmanager-style webhooks -----------------------------------------------------------------


def test_teams_and_webhook_receive_their_documents(deliverer: Deliverer, sink: WebhookSink) -> None:
    assert deliverer.deliver(CHANNELS.channel("teams"), group(drift())).ok
    assert deliverer.deliver(CHANNELS.channel("hook"), group(drift(status="resolved"))).ok
    (teams,) = sink.requests("/teams")
    assert teams.body["attachments"][0]["content"]["version"] == "1.4"
    assert teams.headers["Content-Type"].startswith("application/json")
    (hook,) = sink.requests("/hook")
    assert (hook.body["version"], hook.body["status"]) == ("4", "resolved")


# SNS and Secrets Manager on moto -----------------------------------------------------------------------


@pytest.fixture
def fresh_secrets() -> Iterator[None]:
    """Powertools caches secrets (and its client) between calls: each test starts from nothing."""
    parameters.clear_caches()
    yield
    parameters.clear_caches()


def subscribed_queue(sns: Any, topic_arn: str) -> Callable[[], list[dict[str, Any]]]:
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)

    def received() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return received


def test_sns_publishes_subject_and_body_to_the_alerts_topic(moto_aws: None) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="mlcycle-dev-alerts")["TopicArn"]
    received = subscribed_queue(sns, topic)
    deliverer = Deliverer(CHANNELS, sns=sns, topic_arn=topic, sleep=lambda _: None)
    result = deliverer.deliver(CHANNELS.channel("email"), group(drift()))
    assert (result.ok, result.attempts, result.status, result.error) == (True, 1, None, None)
    (envelope,) = received()
    assert envelope["Subject"] == "[FIRING:1] DriftDetected"
    assert "[FIRING] Drift on ep (model v3)" in envelope["Message"]
    assert "Runbook: https://wiki.example.com/runbook" in envelope["Message"]


def test_sns_without_a_topic_fails_cleanly(moto_aws: None, waits: list[float]) -> None:
    sns = boto3.client("sns", region_name=REGION)
    missing = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    result = Deliverer(CHANNELS, sns=sns, topic_arn=missing, sleep=waits.append).deliver(
        CHANNELS.channel("email"), group(drift())
    )
    assert not result.ok and result.error and "NotFound" in result.error and waits == []
    unconfigured = Deliverer(CHANNELS, sns=None, topic_arn=None).deliver(
        CHANNELS.channel("email"), group(drift())
    )
    assert not unconfigured.ok and "no SNS alerts topic" in (unconfigured.error or "")


def test_secrets_are_read_from_secrets_manager_by_default(
    moto_aws: None, fresh_secrets: None, sink: WebhookSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mlcycle")  # botocore's own DEBUG logs quote every request
    manager = boto3.client("secretsmanager", region_name=REGION)
    manager.create_secret(Name="mlcycle/slack", SecretString=sink.url(SLACK_PATH))
    document = json.dumps({"routing_key": ROUTING_KEY, "events_url": sink.url("/v2/enqueue")})
    manager.create_secret(Name="mlcycle/pagerduty", SecretString=document)
    deliverer = Deliverer(CHANNELS, sns=None, topic_arn=None, sleep=lambda _: None)
    sink.script(SLACK_PATH, (500, {}, f"echo {SLACK_TOKEN}"))
    results = [
        deliverer.deliver(CHANNELS.channel("slack"), group(drift())),
        deliverer.deliver(CHANNELS.channel("pager"), group(drift("fp-9"))),
        deliverer.deliver(CHANNELS.channel("teams"), group(drift())),  # no such secret
    ]
    assert [(r.ok, r.attempts) for r in results] == [(True, 2), (True, 1), (False, 0)]
    assert "cannot read secret 'mlcycle/teams'" in (results[2].error or "")
    assert sink.requests("/v2/enqueue")[0].body["dedup_key"] == "fp-9"
    assert SLACK_TOKEN not in caplog.text and ROUTING_KEY not in caplog.text + repr(results)


# The sink's control API --------------------------------------------------------------------------------


def call(url: str, document: dict[str, Any] | None = None) -> Any:
    data = json.dumps(document).encode() if document is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as response:
        return json.loads(response.read())


def test_another_process_can_script_the_sink_and_read_what_arrived(
    deliverer: Deliverer, sink: WebhookSink
) -> None:
    scripted = {"path": "/hook", "responses": [{"status": 503, "headers": {"Retry-After": "1"}}]}
    assert call(sink.url("/_sink/script"), scripted) == {"scripted": 1}
    assert deliverer.deliver(CHANNELS.channel("hook"), channels.test_notification("hook")).attempts == 2
    found = call(sink.url("/_sink/requests?path=/hook"))["requests"]
    assert [r["method"] for r in found] == ["POST", "POST"]
    assert found[0]["body"]["alerts"][0]["labels"]["alertname"] == channels.TEST_ALERT_NAME
    assert call(sink.url("/_sink/requests"))["requests"] == found  # control calls are not recorded
    call(sink.url("/_sink/reset"), {})
    assert sink.requests() == []
