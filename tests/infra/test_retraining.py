"""Retraining: every trigger reaches the controller; nothing starts the state machine directly."""

from __future__ import annotations

import json

from infra.retraining import CONTROLLER_EVENTS
from mlcycle.names import Env
from tests.infra.synthesized import Synthesized, function_by_handler


def test_custom_bus_is_named_from_the_prefix(synthesized: Synthesized) -> None:
    _, bus = synthesized.one("AWS::Events::EventBus")
    assert bus["Properties"]["Name"] == f"{synthesized.settings.prefix}-bus"


def test_findings_and_new_data_go_to_the_controller(synthesized: Synthesized) -> None:
    retraining = synthesized.stack.retraining
    rule = synthesized.properties(retraining.triggers)
    assert rule["EventBusName"] == {"Ref": synthesized.logical_id(synthesized.stack.events.bus)}
    assert set(rule["EventPattern"]["detail-type"]) == {str(t) for t in CONTROLLER_EVENTS}
    assert "DatasetValidated" in rule["EventPattern"]["detail-type"]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [synthesized.logical_id(retraining.controller), "Arn"]}
    assert "DeadLetterConfig" in target


def test_no_rule_starts_the_state_machine_directly(synthesized: Synthesized) -> None:
    machine_id = synthesized.logical_id(synthesized.stack.training.state_machine)
    for rule in synthesized.resources("AWS::Events::Rule").values():
        for target in rule["Properties"].get("Targets", []):
            assert target["Arn"] != {"Ref": machine_id}


def test_schedule_is_disabled_by_default(synthesized: Synthesized) -> None:
    rule = synthesized.properties(synthesized.stack.retraining.schedule)
    assert rule["State"] == "DISABLED"
    assert rule["ScheduleExpression"].startswith("rate(")


def test_the_controller_may_start_runs_and_knows_its_tables(synthesized: Synthesized) -> None:
    retraining = synthesized.stack.retraining
    fn = function_by_handler(synthesized, "functions.retraining_controller.handler")
    variables = fn["Properties"]["Environment"]["Variables"]
    assert {Env.RETRAINING_TABLE, Env.TRAINING_STATE_MACHINE, Env.EVENT_BUS, Env.MONITOR_TABLE} <= set(
        variables
    )
    policies = json.dumps(
        [
            p["Properties"]["PolicyDocument"]
            for p in synthesized.resources("AWS::IAM::Policy").values()
            if {"Ref": synthesized.logical_id(retraining.controller.role)} in p["Properties"]["Roles"]
        ]
    )
    assert "states:StartExecution" in policies and "states:ListExecutions" in policies
