"""The SLO burn-rate alarms, as synthesized, on the embedded AWS: the metric alarms and then the composite
alarms fire on a fast burn, announce it, and recover (mlcycle.local.cloudwatch.composite)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from infra.slo_alarms import SloAlarms
from mlcycle.config import Settings
from mlcycle.local.cloudformation.provisioner import Provisioner
from mlcycle.local.cloudformation.resources import CREATORS
from mlcycle.local.cloudformation.template import Scope, creation_order, resolve
from mlcycle.local.cloudwatch import CloudWatchState
from mlcycle.local.cloudwatch.alarms import ALARM, INSUFFICIENT, OK, AlarmEvaluator
from mlcycle.local.cloudwatch.composite import CompositeEvaluator, install_api
from mlcycle.local.patching import MethodPatches
from tests.assembly import app_settings
from tests.functional.test_cloudwatch_alarms import Recorder
from tests.infra.bare import bare_stack
from tests.utils import REGION

ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts"
NOW = datetime(2026, 11, 28, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def slo() -> tuple[Settings, dict[str, Any]]:
    """The construct's template in a bare stack (the topic imported: only the alarms are resources)."""
    settings = app_settings()
    stack = bare_stack()
    SloAlarms(stack, "Slo", settings=settings, alerts=sns.Topic.from_topic_arn(stack, "Alerts", TOPIC))
    return settings, dict(Template.from_stack(stack).to_json())


@pytest.fixture
def world(
    moto_aws: None, slo: tuple[Settings, dict[str, Any]]
) -> Iterator[tuple[Settings, Any, CloudWatchState, Recorder]]:
    from moto.cloudwatch.models import cloudwatch_backends

    settings, template = slo
    patches = MethodPatches()
    install_api(patches)
    p = Provisioner("Slo", REGION, ACCOUNT, endpoint_url=None)  # type: ignore[arg-type]  # in-process moto
    try:
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}
        scope = Scope(template=template, pseudo=pseudo)
        for logical_id in creation_order(template["Resources"]):
            body = template["Resources"][logical_id]
            props = resolve(body["Properties"], scope)
            scope.resources[logical_id] = CREATORS[body["Type"]](p, logical_id, props)
        backend = cloudwatch_backends[ACCOUNT][REGION]
        recorder = Recorder()
        state = CloudWatchState(
            AlarmEvaluator(backend, put_event=recorder.put_event, publish=recorder.publish),
            CompositeEvaluator(backend, put_event=recorder.put_event, publish=recorder.publish),
            patches,
        )
        yield settings, boto3.client("cloudwatch", region_name=REGION), state, recorder
    finally:
        patches.restore()
        shutil.rmtree(p.work, ignore_errors=True)


def _traffic(client: Any, settings: Settings, at: datetime, calls: int, errors: int, slow: int = 0) -> None:
    """``calls`` invocations at ``at``: ``errors`` of them 5xx, ``slow`` of them slower than the SLO."""
    dimensions = [
        {"Name": "EndpointName", "Value": settings.endpoint_name},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    slow_us = settings.monitoring.latency_slo_ms * 1000 * 2
    latencies = [slow_us] * slow + [20_000.0] * (calls - slow)
    data = [
        ("Invocations", [1.0] * calls),
        ("Invocation5XXErrors", [1.0] * errors + [0.0] * (calls - errors)),
        ("ModelLatency", latencies),
    ]
    for name, values in data:
        for start in range(0, len(values), 150):  # PutMetricData takes at most 150 values a datum
            client.put_metric_data(
                Namespace="AWS/SageMaker",
                MetricData=[
                    {
                        "MetricName": name,
                        "Dimensions": dimensions,
                        "Timestamp": at,
                        "Values": values[start : start + 150],
                    }
                ],
            )


def _window(alarm_name: str) -> str:
    """``Slo-SloAvailabilityBurnRate1hBBF7861F-b789...`` -> ``1h``."""
    found = re.search(r"BurnRate(\d+(?:min|h))", alarm_name)
    assert found, alarm_name
    return found.group(1)


def _states(client: Any, prefix: str) -> dict[str, str]:
    found = client.describe_alarms(AlarmNamePrefix=prefix, AlarmTypes=["CompositeAlarm"])
    return {a["AlarmName"].removeprefix(prefix): a["StateValue"] for a in found["CompositeAlarms"]}


def test_a_fast_burn_pages_announces_and_recovers(world: Any) -> None:
    settings, client, state, recorder = world
    prefix = f"{settings.prefix}-slo-"
    # GIVEN the composites as created: INSUFFICIENT_DATA, and OK at their first evaluation (as in AWS)
    assert set(_states(client, prefix).values()) == {INSUFFICIENT}
    first = state.evaluate(NOW)
    assert {(c.alarm_name.removeprefix(prefix), c.new) for c in first} == {
        (f"{slo}-{severity}", OK) for slo in ("availability", "latency") for severity in ("page", "ticket")
    }
    recorder.events.clear()
    recorder.messages.clear()
    # WHEN 5% of a minute's 1,000 calls fail (burn rate 50 against a 99.9% objective) and 3% are slow
    # (burn rate 3 against the 99% latency objective: within budget pace for paging)
    _traffic(client, settings, NOW - timedelta(minutes=2), calls=1000, errors=50, slow=30)
    changes = state.evaluate(NOW)
    # THEN each availability window alarm fires, and then both availability composites
    windows = [c for c in changes if "BurnRate" in c.alarm_name]
    assert sorted(_window(c.alarm_name) for c in windows if c.new == ALARM) == ["1h", "30min", "5min", "6h"]
    assert all("Availability" in c.alarm_name for c in changes if "BurnRate" in c.alarm_name)
    composites = [c for c in changes if c.alarm_name.startswith(prefix)]
    assert [(c.alarm_name.removeprefix(prefix), c.old, c.new) for c in composites] == [
        ("availability-page", OK, ALARM),
        ("availability-ticket", OK, ALARM),
    ]
    assert _states(client, prefix) == {
        "availability-page": ALARM,
        "availability-ticket": ALARM,
        "latency-page": OK,
        "latency-ticket": OK,
    }
    # AND the composites' state-change events have the composite detail AWS sends
    page = next(c for c in composites if c.alarm_name.endswith("page"))
    [detail] = [d for _, t, d, r in recorder.events if r == [page.alarm_arn]]
    assert detail["configuration"]["alarmRule"].startswith('(ALARM("arn:aws:cloudwatch:')
    assert detail["state"]["value"] == ALARM and detail["previousState"]["value"] == OK
    triggering = json.loads(detail["state"]["reasonData"])["triggeringAlarms"]
    assert sorted(_window(t["arn"]) for t in triggering) == ["1h", "5min"]
    assert all(t["state"]["value"] == ALARM for t in triggering)
    assert "transitioned to ALARM at" in detail["state"]["reason"]
    # AND their SNS action ran: the alerts topic got CloudWatch's composite message; window alarms send none
    assert {topic for topic, _, _ in recorder.messages} == {TOPIC}
    messages = [json.loads(m) for _, _, m in recorder.messages]
    assert sorted(m["AlarmName"].removeprefix(prefix) for m in messages) == [
        "availability-page",
        "availability-ticket",
    ]
    assert all(m["NewStateValue"] == ALARM and m["AlarmRule"] and m["TriggeringChildren"] for m in messages)
    # WHEN the next hour's traffic is clean
    later = NOW + timedelta(minutes=65)
    _traffic(client, settings, NOW + timedelta(minutes=30), calls=1000, errors=0)
    recovered = state.evaluate(later)
    # THEN the page resets (both of its windows are clean); the ticket resets on its short window
    # although the 6-hour window still holds the burst
    assert _states(client, prefix)["availability-page"] == OK
    assert _states(client, prefix)["availability-ticket"] == OK
    still = client.describe_alarms(AlarmNamePrefix="Slo-SloAvailabilityBurnRate6h")["MetricAlarms"]
    assert [a["StateValue"] for a in still] == [ALARM]
    assert {c.alarm_name.removeprefix(prefix) for c in recovered if c.new == OK} >= {
        "availability-page",
        "availability-ticket",
    }
    assert json.loads(recorder.messages[-1][2])["NewStateValue"] == OK


def test_slow_answers_page_through_the_latency_slo(world: Any) -> None:
    settings, client, state, _ = world
    prefix = f"{settings.prefix}-slo-"
    state.evaluate(NOW - timedelta(minutes=1))  # the composites settle to OK
    # WHEN a fifth of the calls are slower than the objective (burn rate 20), none fails
    _traffic(client, settings, NOW - timedelta(minutes=2), calls=500, errors=0, slow=100)
    state.evaluate(NOW)
    # THEN the latency page and ticket fire, and availability stays quiet
    assert _states(client, prefix) == {
        "availability-page": OK,
        "availability-ticket": OK,
        "latency-page": ALARM,
        "latency-ticket": ALARM,
    }


def test_no_traffic_burns_no_budget(world: Any) -> None:
    settings, client, state, _ = world
    state.evaluate(NOW)
    assert set(_states(client, f"{settings.prefix}-slo-").values()) == {OK}
    assert all(a["StateValue"] == OK for a in client.describe_alarms()["MetricAlarms"])
