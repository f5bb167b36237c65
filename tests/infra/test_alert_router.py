"""The alert router's stack resources: what feeds it, its state table, its secrets and where failures go."""

from __future__ import annotations

import json

from infra.alert_router import ROUTED_EVENTS
from mlcycle.names import Env
from tests.infra.synthesized import Synthesized, function_by_handler


def test_our_events_and_our_alarms_changes_feed_the_router(synthesized: Synthesized) -> None:
    router = synthesized.stack.alert_router
    ours = synthesized.properties(router.rules["events"])
    assert ours["EventBusName"] == {"Ref": synthesized.logical_id(synthesized.stack.events.bus)}
    assert set(ours["EventPattern"]["detail-type"]) == {str(t) for t in ROUTED_EVENTS}
    alarms = synthesized.properties(router.rules["alarms"])
    assert "EventBusName" not in alarms  # the default bus, where CloudWatch puts alarm changes
    assert alarms["EventPattern"] == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [{"prefix": synthesized.settings.prefix}]},
    }
    flush = synthesized.properties(router.rules["flush"])
    assert flush["ScheduleExpression"].startswith("rate(")
    for rule in router.rules.values():
        [target] = synthesized.properties(rule)["Targets"]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 3
        assert target["DeadLetterConfig"]["Arn"] == {
            "Fn::GetAtt": [synthesized.logical_id(router.dead_letters), "Arn"]
        }


def test_the_router_keeps_state_with_ttl_and_reads_only_its_channels_secrets(
    synthesized: Synthesized,
) -> None:
    router = synthesized.stack.alert_router
    table = synthesized.properties(router.table)
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    fn = function_by_handler(synthesized, "functions.route_alert.handler")
    variables = fn["Properties"]["Environment"]["Variables"]
    assert {Env.ALERT_TABLE, Env.ALERTS_TOPIC} <= set(variables)
    policies = [
        p["Properties"]["PolicyDocument"]
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": synthesized.logical_id(router.function.role)} in p["Properties"]["Roles"]
    ]
    statements = [s for doc in policies for s in doc["Statement"]]
    secret_reads = [s for s in statements if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])]
    text = json.dumps(secret_reads)
    named = [c.secret for c in synthesized.settings.alerts.channels if c.secret]
    assert named, "the test settings name channel secrets"
    for name in named:
        assert f"secret:{name}-??????" in text
    assert "secret:*" not in text


def test_no_secret_value_reaches_the_template(synthesized: Synthesized) -> None:
    text = json.dumps(synthesized.template.to_json())
    for needle in ("hooks.slack.com", "events.pagerduty.com", "routing_key"):
        assert needle not in text


def test_failed_handling_lands_in_the_dead_letter_queue(synthesized: Synthesized) -> None:
    router = synthesized.stack.alert_router
    configs = synthesized.resources("AWS::Lambda::EventInvokeConfig")
    fn_id = synthesized.logical_id(router.function)
    [config] = [c for c in configs.values() if c["Properties"]["FunctionName"] == {"Ref": fn_id}]
    assert config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [synthesized.logical_id(router.dead_letters), "Arn"]
    }
