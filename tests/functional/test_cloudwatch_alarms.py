"""The embedded AWS evaluates CloudWatch alarms as CloudWatch does (moto stores them and never does)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from mlcycle.local.cloudwatch.alarms import ALARM, INSUFFICIENT, OK, AlarmEvaluator
from tests.utils import REGION

NOW = datetime(
    2026, 11, 28, 12, 0, 30, tzinfo=UTC
)  # 30 s into a minute: the last complete period ends at :00
DIMENSIONS = [{"Name": "EndpointName", "Value": "e"}, {"Name": "VariantName", "Value": "AllTraffic"}]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any], list[str]]] = []
        self.messages: list[tuple[str, str, str]] = []

    def put_event(self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        self.events.append((source, detail_type, detail, resources))

    def publish(self, topic: str, subject: str, message: str) -> None:
        self.messages.append((topic, subject, message))


@pytest.fixture
def world(moto_aws: None) -> tuple[Any, AlarmEvaluator, Recorder]:
    from moto.cloudwatch.models import cloudwatch_backends

    client = boto3.client("cloudwatch", region_name=REGION)
    recorder = Recorder()
    backend = cloudwatch_backends["123456789012"][REGION]
    return client, AlarmEvaluator(backend, put_event=recorder.put_event, publish=recorder.publish), recorder


def _put(
    client: Any,
    name: str,
    values: list[float],
    minutes_ago: int,
    dimensions: list[dict[str, str]] = DIMENSIONS,
) -> None:
    at = NOW.replace(second=0) - timedelta(minutes=minutes_ago) + timedelta(seconds=10)
    client.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[{"MetricName": name, "Dimensions": dimensions, "Timestamp": at, "Values": values}],
    )


def _latency_alarm(client: Any, **overrides: Any) -> None:
    client.put_metric_alarm(
        **{
            "AlarmName": "p99-latency",
            "Namespace": "AWS/SageMaker",
            "MetricName": "ModelLatency",
            "Dimensions": DIMENSIONS,
            "ExtendedStatistic": "p99",
            "Period": 60,
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "Threshold": 200_000.0,
            "ComparisonOperator": "GreaterThanThreshold",
            "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:alerts"],
            "OKActions": ["arn:aws:sns:us-east-1:123456789012:alerts"],
        }
        | overrides
    )


def test_m_out_of_n_percentile_breaches_set_alarm_and_announce_it(world: Any) -> None:
    client, evaluator, recorder = world
    _latency_alarm(client)
    # GIVEN two of the last three minutes with a p99 above 200 ms, one below
    _put(client, "ModelLatency", [1_000.0] * 99 + [900_000.0], minutes_ago=3)  # p99 = 1 ms... nearest rank
    _put(client, "ModelLatency", [1_000.0] * 90 + [300_000.0] * 10, minutes_ago=2)
    _put(client, "ModelLatency", [250_000.0] * 10, minutes_ago=1)
    # WHEN the alarms are evaluated
    [change] = evaluator.evaluate(NOW)
    # THEN the alarm is in ALARM, for everyone to see, with the event and the SNS message AWS sends
    assert (change.old, change.new) == (OK, ALARM)
    assert client.describe_alarms(AlarmNames=["p99-latency"])["MetricAlarms"][0]["StateValue"] == ALARM
    [(source, detail_type, detail, resources)] = recorder.events
    assert (source, detail_type) == ("aws.cloudwatch", "CloudWatch Alarm State Change")
    assert detail["alarmName"] == "p99-latency" and detail["state"]["value"] == ALARM
    assert detail["previousState"]["value"] == OK and resources == [change.alarm_arn]
    [(topic, subject, message)] = recorder.messages
    assert topic.endswith(":alerts") and subject.startswith('ALARM: "p99-latency"')
    assert json.loads(message)["NewStateValue"] == ALARM
    # AND evaluating again changes nothing and announces nothing
    assert evaluator.evaluate(NOW) == [] and len(recorder.events) == 1


def test_one_breach_of_three_needed_two_is_ok(world: Any) -> None:
    client, evaluator, _ = world
    _latency_alarm(client)
    _put(client, "ModelLatency", [500_000.0], minutes_ago=1)
    _put(client, "ModelLatency", [1_000.0], minutes_ago=2)
    assert evaluator.evaluate(NOW) == []  # stays OK


@pytest.mark.parametrize(
    ("treatment", "expected"),
    [("missing", INSUFFICIENT), ("notBreaching", None), ("breaching", ALARM), ("ignore", None)],
)
def test_missing_data_treatments(world: Any, treatment: str, expected: str | None) -> None:
    client, evaluator, _ = world
    _latency_alarm(client, TreatMissingData=treatment)
    changes = evaluator.evaluate(NOW)  # no data at all
    assert [c.new for c in changes] == ([expected] if expected else [])


def test_error_rate_by_metric_math_and_recovery(world: Any) -> None:
    client, evaluator, recorder = world
    query = lambda name, id_: {  # noqa: E731
        "Id": id_,
        "MetricStat": {
            "Metric": {"Namespace": "AWS/SageMaker", "MetricName": name, "Dimensions": DIMENSIONS},
            "Period": 60,
            "Stat": "Sum",
        },
        "ReturnData": False,
    }
    client.put_metric_alarm(
        AlarmName="error-rate",
        Metrics=[
            {"Id": "rate", "Expression": "errors / invocations", "ReturnData": True},
            query("Invocation5XXErrors", "errors"),
            query("Invocations", "invocations"),
        ],
        EvaluationPeriods=1,
        Threshold=0.05,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
        OKActions=["arn:aws:sns:us-east-1:123456789012:alerts"],
    )
    # GIVEN 10 of 100 invocations failed in the last minute
    _put(client, "Invocations", [1.0] * 100, minutes_ago=1)
    _put(client, "Invocation5XXErrors", [1.0] * 10, minutes_ago=1)
    assert [c.new for c in evaluator.evaluate(NOW)] == [ALARM]
    # WHEN a minute later 1 of 100 fails
    later = NOW + timedelta(minutes=1)
    client.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "Invocations",
                "Dimensions": DIMENSIONS,
                "Timestamp": NOW.replace(second=10),
                "Values": [1.0] * 100,
            },
            {
                "MetricName": "Invocation5XXErrors",
                "Dimensions": DIMENSIONS,
                "Timestamp": NOW.replace(second=20),
                "Value": 1.0,
            },
        ],
    )
    # THEN the alarm recovers and says so to its OK action
    assert [c.new for c in evaluator.evaluate(later)] == [OK]
    assert json.loads(recorder.messages[-1][2])["NewStateValue"] == OK


def test_other_dimensions_and_incomplete_periods_do_not_count(world: Any) -> None:
    client, evaluator, _ = world
    _latency_alarm(client, EvaluationPeriods=1, DatapointsToAlarm=1)
    _put(
        client,
        "ModelLatency",
        [900_000.0],
        minutes_ago=1,
        dimensions=[{"Name": "EndpointName", "Value": "e"}],
    )
    _put(client, "ModelLatency", [900_000.0], minutes_ago=0)  # the current minute is not complete
    _put(client, "ModelLatency", [1_000.0], minutes_ago=1)
    assert evaluator.evaluate(NOW) == []


def test_an_unsupported_alarm_says_why(world: Any) -> None:
    client, evaluator, _ = world
    client.put_metric_alarm(
        AlarmName="anomaly",
        Metrics=[{"Id": "m", "Expression": "ANOMALY_DETECTION_BAND(x, 2)", "ReturnData": True}],
        EvaluationPeriods=1,
        ComparisonOperator="GreaterThanThreshold",
        Threshold=1.0,
    )
    [change] = evaluator.evaluate(NOW)
    assert change.new == INSUFFICIENT and "embedded AWS" in change.reason
