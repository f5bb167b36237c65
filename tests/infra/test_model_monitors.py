"""The model monitors' stack resources: the schedule, the function and what it may touch, the state table."""

from __future__ import annotations

import json

from mlcycle.names import Env
from tests.infra.synthesized import Synthesized, function_by_handler


def test_the_monitor_runs_on_a_schedule_with_retries_and_a_dead_letter_queue(
    synthesized: Synthesized,
) -> None:
    monitors = synthesized.stack.model_monitors
    rule = synthesized.properties(monitors.schedule)
    assert synthesized.settings.monitoring.schedule_minutes == 60
    assert rule["ScheduleExpression"] == "rate(1 hour)"  # the CDK writes whole hours as hours
    [target] = rule["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 3
    assert target["DeadLetterConfig"]["Arn"] == {
        "Fn::GetAtt": [synthesized.logical_id(monitors.dead_letters), "Arn"]
    }


def test_the_monitor_reads_capture_and_references_and_writes_state_and_events(
    synthesized: Synthesized,
) -> None:
    monitors = synthesized.stack.model_monitors
    fn = function_by_handler(synthesized, "functions.monitor_endpoint.handler")
    variables = fn["Properties"]["Environment"]["Variables"]
    assert {Env.MONITOR_TABLE, Env.MONITORING_BUCKET, Env.EVENT_BUS} <= set(variables)
    table = synthesized.resources("AWS::DynamoDB::Table")[synthesized.logical_id(monitors.table)][
        "Properties"
    ]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    policy = json.dumps(
        [
            p["Properties"]["PolicyDocument"]
            for p in synthesized.resources("AWS::IAM::Policy").values()
            if {"Ref": synthesized.logical_id(monitors.monitor.role)} in p["Properties"]["Roles"]
        ]
    )
    for action in (
        "dynamodb:PutItem",
        "s3:GetObject*",
        "s3:PutObject",
        "events:PutEvents",
        "sagemaker:DescribeModelPackage",
        "sagemaker:DescribeEndpoint",
    ):
        assert action in policy, action
    assert "sagemaker:UpdateEndpoint" not in policy and "sagemaker:DeleteTags" not in policy


def test_drift_and_data_quality_alarm_with_the_debounce_to_the_alerts_topic(synthesized: Synthesized) -> None:
    from functions.monitor_endpoint import NAMESPACE
    from infra.model_monitors import NAMESPACE as ALARMED_NAMESPACE

    assert NAMESPACE == ALARMED_NAMESPACE  # the alarms watch what the function publishes
    monitors, settings = synthesized.stack.model_monitors, synthesized.settings
    debounce = settings.monitoring.debounce
    drift = synthesized.properties(monitors.alarms["drifted_feature_share"])
    assert drift["Namespace"] == NAMESPACE and drift["MetricName"] == "drifted_feature_share"
    assert drift["Dimensions"] == [{"Name": "endpoint", "Value": settings.endpoint_name}]
    assert drift["Threshold"] == settings.monitoring.drift_share
    assert (drift["EvaluationPeriods"], drift["DatapointsToAlarm"]) == (
        debounce.windows,
        debounce.windows_breached,
    )
    assert drift["AlarmActions"] == [{"Ref": synthesized.logical_id(synthesized.stack.alerting.alerts)}]
    assert synthesized.properties(monitors.alarms["data_quality_violations"])["Threshold"] == 1
