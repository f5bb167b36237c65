from __future__ import annotations

from typing import Any

from tests.infra.synthesized import Synthesized


def test_custom_bus_is_named_from_the_prefix(synthesized: Synthesized) -> None:
    _, bus = synthesized.one("AWS::Events::EventBus")
    assert bus["Properties"]["Name"] == f"{synthesized.settings.prefix}-bus"


def _rule(synthesized: Synthesized, construct: object) -> dict[str, Any]:
    return synthesized.properties(construct)


def test_new_validated_data_starts_training(synthesized: Synthesized) -> None:
    retraining = synthesized.stack.retraining
    rule = _rule(synthesized, retraining.new_data)
    assert rule["EventBusName"] == {"Ref": synthesized.logical_id(synthesized.stack.events.bus)}
    assert rule["EventPattern"] == {"source": ["mlcycle"], "detail-type": ["DatasetValidated"]}
    (target,) = rule["Targets"]
    machine_id = synthesized.logical_id(synthesized.stack.training.state_machine)
    assert target["Arn"] == {"Ref": machine_id}
    assert target["RoleArn"] == {"Fn::GetAtt": [synthesized.logical_id(retraining.role), "Arn"]}
    assert "DeadLetterConfig" in target


def test_schedule_is_disabled_by_default(synthesized: Synthesized) -> None:
    rule = _rule(synthesized, synthesized.stack.retraining.schedule)
    assert rule["State"] == "DISABLED"
    assert rule["ScheduleExpression"].startswith("rate(")
