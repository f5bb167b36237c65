"""EventBridge of the embedded AWS: Lambda, Step Functions and SNS targets, schedules, platform events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from mlcycle.local.events import next_fire, put_platform_event
from mlcycle.local.server import EmbeddedAws
from tests.functional.local.conftest import received

Client = Callable[[str], Any]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _received(function_arn: str, count: int = 1) -> Callable[[], list[Any] | None]:
    def probe() -> list[Any] | None:
        events = received(function_arn)
        return list(events) if len(events) >= count else None

    return probe


@pytest.fixture
def bus(aws_client: Client) -> str:
    name = unique("bus")
    aws_client("events").create_event_bus(Name=name)
    return name


def _rule(aws_client: Client, bus: str, targets: list[dict[str, Any]], source: str = "mlcycle") -> str:
    events = aws_client("events")
    name = unique("rule")
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    return name


def _put(aws_client: Client, bus: str, detail: dict[str, Any], detail_type: str = "DatasetValidated") -> None:
    entry = {
        "Source": "mlcycle",
        "DetailType": detail_type,
        "Detail": json.dumps(detail),
        "EventBusName": bus,
    }
    result = aws_client("events").put_events(Entries=[entry])
    assert result["FailedEntryCount"] == 0


def _queue(aws_client: Client) -> tuple[str, str]:
    sqs = aws_client("sqs")
    url = str(sqs.create_queue(QueueName=unique("queue"))["QueueUrl"])
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, str(attributes["QueueArn"])


def _messages(aws_client: Client, url: str) -> Callable[[], list[dict[str, Any]] | None]:
    return lambda: aws_client("sqs").receive_message(QueueUrl=url).get("Messages")


def test_rule_on_a_custom_bus_invokes_a_lambda(
    aws_client: Client, make_function: Any, wait_for: Any, bus: str
) -> None:
    arn = make_function("record")
    _rule(aws_client, bus, [{"Id": "fn", "Arn": arn}])
    _put(aws_client, bus, {"dataset": "churn"})
    (event,) = wait_for(_received(arn), what="the rule's Lambda target")
    assert event["source"] == "mlcycle"
    assert event["detail-type"] == "DatasetValidated"
    assert event["detail"] == {"dataset": "churn"}
    assert event["account"] == "123456789012"
    datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")  # AWS's format, not moto's epoch
    assert "ingestion-time" not in event


def test_target_input_path_and_transformer(
    aws_client: Client, make_function: Any, wait_for: Any, bus: str
) -> None:
    by_path, by_template, constant = make_function("record"), make_function("record"), make_function("record")
    transformer = {
        "InputPathsMap": {"dataset": "$.detail.dataset", "kind": "$.detail-type"},
        "InputTemplate": '{"name": "<dataset>", "kind": "<kind>"}',
    }
    targets = [
        {"Id": "path", "Arn": by_path, "InputPath": "$.detail"},
        {"Id": "template", "Arn": by_template, "InputTransformer": transformer},
        {"Id": "constant", "Arn": constant, "Input": '{"fixed": true}'},
    ]
    _rule(aws_client, bus, targets)
    _put(aws_client, bus, {"dataset": "churn"})
    assert wait_for(_received(by_path), what="InputPath") == [{"dataset": "churn"}]
    assert wait_for(_received(by_template), what="InputTransformer") == [
        {"name": "churn", "kind": "DatasetValidated"}
    ]
    assert wait_for(_received(constant), what="Input") == [{"fixed": True}]


def test_rule_starts_a_step_functions_execution(aws_client: Client, wait_for: Any, bus: str) -> None:
    sfn = aws_client("stepfunctions")
    machine = sfn.create_state_machine(
        name=unique("machine"),
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/test-states",
    )["stateMachineArn"]
    _rule(
        aws_client, bus, [{"Id": "sfn", "Arn": machine, "RoleArn": "arn:aws:iam::123456789012:role/events"}]
    )
    _put(aws_client, bus, {"dataset": "churn"})
    (execution,) = wait_for(
        lambda: sfn.list_executions(stateMachineArn=machine)["executions"], what="execution"
    )
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"])["detail"] == {"dataset": "churn"}


def test_rule_publishes_to_sns_and_keeps_moto_targets(aws_client: Client, wait_for: Any, bus: str) -> None:
    # GIVEN a rule with an SNS target (delivered by us) and an SQS target (delivered by moto)
    sns = aws_client("sns")
    topic = sns.create_topic(Name=unique("topic"))["TopicArn"]
    via_sns_url, via_sns_arn = _queue(aws_client)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=via_sns_arn)
    direct_url, direct_arn = _queue(aws_client)
    _rule(aws_client, bus, [{"Id": "sns", "Arn": topic}, {"Id": "sqs", "Arn": direct_arn}])
    # WHEN an event matches
    _put(aws_client, bus, {"dataset": "churn"})
    # THEN both receive it
    (notification,) = wait_for(_messages(aws_client, via_sns_url), what="the SNS delivery")
    assert json.loads(json.loads(notification["Body"])["Message"])["detail"] == {"dataset": "churn"}
    (direct,) = wait_for(_messages(aws_client, direct_url), what="the SQS delivery")
    assert json.loads(direct["Body"])["detail"] == {"dataset": "churn"}


def test_handler_putting_events_does_not_deadlock(
    aws_client: Client, make_function: Any, wait_for: Any, bus: str
) -> None:
    recorder = make_function("record")
    _rule(aws_client, bus, [{"Id": "fn", "Arn": recorder}], source="tests")
    putter = make_function("put_event", env={"EVENT_BUS": bus})
    response = aws_client("lambda").invoke(FunctionName=putter, Payload=b"{}")
    assert "FunctionError" not in response
    (event,) = wait_for(_received(recorder), what="the chained event")
    assert event["detail"] == {"from": "put_event"}


def test_put_platform_event_fires_default_bus_rules(
    embedded_aws: EmbeddedAws, aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    arn = make_function("record")
    group = unique("group")
    events = aws_client("events")
    name = unique("rule")
    pattern = {"source": ["aws.sagemaker"], "detail": {"ModelPackageGroupName": [group]}}
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": arn}])
    detail = {"ModelPackageGroupName": group, "ModelApprovalStatus": "Approved"}
    put_platform_event(
        embedded_aws.ctx,
        source="aws.sagemaker",
        detail_type="SageMaker Model Package State Change",
        detail=detail,
    )
    (event,) = wait_for(_received(arn), what="the platform event")
    assert event["detail-type"] == "SageMaker Model Package State Change"
    assert event["detail"] == detail


def test_a_scheduled_rule_gets_only_its_own_schedule_not_every_event(
    embedded_aws: EmbeddedAws, aws_client: Client, make_function: Any
) -> None:
    # GIVEN a rule with a schedule that will not fire during the test, and no event pattern
    events, arn, name = aws_client("events"), make_function("record"), unique("hourly")
    events.put_rule(Name=name, ScheduleExpression="rate(1 hour)")
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": arn}])
    try:
        # WHEN other events arrive on the default bus
        put_platform_event(embedded_aws.ctx, source="aws.sagemaker", detail_type="Anything", detail={"a": 1})
        events.put_events(Entries=[{"Source": "mine", "DetailType": "Other", "Detail": "{}"}])
        time.sleep(1.5)
        # THEN its target never runs (moto would send them every event: an empty pattern matches all)
        assert _received(arn)() is None
    finally:
        events.remove_targets(Rule=name, Ids=["fn"])
        events.delete_rule(Name=name)


@pytest.fixture
def fast_clock(embedded_aws: EmbeddedAws) -> Iterator[None]:
    """A minute of schedule time per 0.1 s: rate(1 minute) fires ten times a second."""
    previous = embedded_aws.ctx.time_scale
    embedded_aws.ctx.time_scale = 600
    yield
    embedded_aws.ctx.time_scale = previous


@pytest.mark.usefixtures("fast_clock")
def test_scheduled_rule_fires_with_time_scale(aws_client: Client, make_function: Any, wait_for: Any) -> None:
    events, arn, name = aws_client("events"), make_function("record"), unique("every-minute")
    rule_arn = events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")["RuleArn"]
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": arn}])
    try:
        first, second = wait_for(_received(arn, count=2), what="two scheduled events")[:2]
    finally:
        events.remove_targets(Rule=name, Ids=["fn"])
        events.delete_rule(Name=name)
    assert first["source"] == "aws.events"
    assert first["detail-type"] == "Scheduled Event"
    assert first["resources"] == [rule_arn]
    assert first["detail"] == {}
    assert first["id"] != second["id"]


@pytest.mark.usefixtures("fast_clock")
def test_scheduler_schedule_fires_its_target(aws_client: Client, make_function: Any, wait_for: Any) -> None:
    scheduler, arn, name = aws_client("scheduler"), make_function("record"), unique("schedule")
    scheduler.create_schedule(
        Name=name,
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": arn,
            "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
            "Input": '{"job": "monitor"}',
        },
    )
    try:
        assert wait_for(_received(arn), what="the schedule")[0] == {"job": "monitor"}
    finally:
        scheduler.delete_schedule(Name=name)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("rate(5 minutes)", "2025-01-01T10:00:00", "2025-01-01T10:05:00"),
        ("cron(0 12 * * ? *)", "2025-01-01T12:00:00", "2025-01-02T12:00:00"),
        ("cron(0/15 * ? * MON-FRI *)", "2025-01-03T23:50:00", "2025-01-06T00:00:00"),  # Friday -> Monday
        ("cron(0 0 L * ? *)", "2025-02-10T00:00:00", "2025-02-28T00:00:00"),
        ("cron(30 9 ? * 2#1 *)", "2025-01-01T00:00:00", "2025-01-06T09:30:00"),  # first Monday
        ("cron(0 18 ? * 6L *)", "2025-01-01T00:00:00", "2025-01-31T18:00:00"),  # last Friday
        ("cron(0 8 1 JAN,JUL ? 2026)", "2025-03-01T00:00:00", "2026-01-01T08:00:00"),
    ],
)
def test_next_fire(expression: str, after: str, expected: str) -> None:
    start = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert next_fire(expression, start) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_next_fire_honours_the_time_zone_and_one_time_schedules() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert next_fire("cron(0 9 * * ? *)", start, "Europe/Paris") == datetime(2025, 1, 1, 8, tzinfo=UTC)
    assert next_fire("at(2025-06-01T00:00:00)", start) == datetime(2025, 6, 1, tzinfo=UTC)
    assert next_fire("at(2024-06-01T00:00:00)", start) is None
    assert next_fire("cron(0 0 1 1 ? 2020)", start) is None


@pytest.mark.parametrize(
    "expression", ["cron(0 12 * * *)", "cron(0 12 * * MON *)", "cron(0 12 15W * ? *)", "daily"]
)
def test_invalid_schedule_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(ValueError):
        next_fire(expression, datetime(2025, 1, 1, tzinfo=UTC))


def test_a_delivery_to_a_target_that_is_gone_lands_in_its_dead_letter_queue_at_once(
    aws_client: Client, make_function: Any, wait_for: Any, bus: str
) -> None:
    # GIVEN a rule whose Lambda target is gone, with retries and a dead-letter queue
    url, queue_arn = _queue(aws_client)
    arn = make_function("record")
    aws_client("lambda").delete_function(FunctionName=arn)
    target = {
        "Id": "gone",
        "Arn": arn,
        "RetryPolicy": {"MaximumRetryAttempts": 5, "MaximumEventAgeInSeconds": 3600},
        "DeadLetterConfig": {"Arn": queue_arn},
    }
    rule = _rule(aws_client, bus, [target])
    # WHEN an event matches
    _put(aws_client, bus, {"dataset": "churn"})
    # THEN the event is in the dead-letter queue, with why, not retried (EventBridge does not retry a
    # target that does not exist)
    sqs = aws_client("sqs")
    (message,) = wait_for(
        lambda: sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"]).get("Messages"),
        timeout=20,
        what="the dead-lettered event",
    )
    assert json.loads(message["Body"])["detail"] == {"dataset": "churn"}
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert attributes["RULE_ARN"].endswith(f"rule/{bus}/{rule}")
    assert attributes["TARGET_ARN"] == arn
    assert attributes["ERROR_CODE"] == "ResourceNotFoundException"
    assert attributes["RETRY_ATTEMPTS"] == "0"
    assert "EXHAUSTED_RETRY_CONDITION" not in attributes
