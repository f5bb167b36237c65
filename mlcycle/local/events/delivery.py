"""EventBridge delivery in the embedded AWS: rules deliver to Lambda, Step Functions and SNS.

moto's ``Rule.send_to_targets`` delivers only to SQS, CloudWatch Logs, buses, archives and API
destinations (a Lambda, Step Functions or SNS target raises ``NotImplementedError``). The package's
``install`` wraps it: those three services are delivered here (Lambda asynchronously, through
mlcycle.local.awslambda), with the target's retry policy and dead-letter queue
(mlcycle.local.events.retries); the rest by moto's own code.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlcycle.local import context
from mlcycle.local.context import LocalContext
from mlcycle.local.events.retries import RetryingDelivery

if TYPE_CHECKING:
    from moto.events.models import Rule
    from moto.events.utils import EventMessageType

_LOG = logging.getLogger(__name__)

#: Services whose targets moto cannot deliver to; everything else stays with moto.
_OUR_TARGETS = frozenset({"lambda", "states", "sns"})

SendToTargets = Callable[..., None]


@dataclass
class DeliveryState:
    """moto's own ``Rule.send_to_targets`` (for the targets it delivers itself), and our deliveries'
    retries."""

    original: SendToTargets
    retrying: RetryingDelivery


def put_platform_event(
    ctx: LocalContext,
    *,
    source: str,
    detail_type: str,
    detail: Mapping[str, Any],
    bus: str = "default",
    resources: Sequence[str] = (),
) -> str:
    """Put an event on a bus as an AWS service would (rules fire); returns the event id."""
    from moto.events.models import events_backends

    entry = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail), "EventBusName": bus}
    if resources:
        entry["Resources"] = list(resources)  # type: ignore[assignment]
    result = events_backends[ctx.account][ctx.region].put_events([entry])[0]
    if "EventId" not in result:
        raise ValueError(f"event {detail_type!r} from {source!r} was rejected: {result}")
    return str(result["EventId"])


def _scheduled_only(rule: Rule) -> bool:
    """A rule with a schedule and no pattern: in AWS it gets its own scheduled events, nothing else
    (moto treats its empty pattern as matching every event on the bus)."""
    return bool(rule.scheduled_expression) and not rule.event_pattern.get_pattern()


def _its_schedule(rule: Rule, event: EventMessageType) -> bool:
    return event.get("source") == "aws.events" and rule.arn in (event.get("resources") or [])


def send_to_targets(rule: Rule, original_event: EventMessageType, transform_input: bool = True) -> None:
    """Replacement of ``Rule.send_to_targets``: our services here, the others through moto."""
    if rule.state != "ENABLED" or not rule.event_pattern.matches_event(original_event):
        return
    if _scheduled_only(rule) and not _its_schedule(rule, original_event):
        return
    ours = [target for target in rule.targets if _arn_service(target["Arn"]) in _OUR_TARGETS]
    for target in ours:
        # AWS applies a target's input settings to every event; moto's transform_input=False only
        # marks events (S3's, replays) its own template parser cannot handle.
        payload = _target_input(rule, target, original_event)
        deliver(target, payload, source=rule.arn)
    rest = [target for target in rule.targets if target not in ours]
    state = context.installed_or_none(DeliveryState)
    if rest and state is not None:
        # A shallow copy with only moto's targets: the rule itself is shared with request threads.
        clone = copy.copy(rule)
        clone.targets = rest
        state.original(clone, original_event, transform_input)


def deliver(target: Mapping[str, Any], payload: Any, *, source: str) -> None:
    """Deliver an event or schedule payload to a rule's or a schedule's target (``Arn``, ``RetryPolicy``,
    ``DeadLetterConfig``). Delivery is asynchronous in AWS: a failure is retried, then dead-lettered, and
    never raised to whoever put the event."""
    context.installed(DeliveryState).retrying.deliver(target, payload, source)


def send(arn: str, payload: Any) -> None:
    """One attempt to deliver to a Lambda, Step Functions, SNS or SQS target; raises if it is refused."""
    _, _, service, region, account, resource = arn.split(":", 5)
    if service == "lambda":
        from moto.awslambda.utils import get_backend

        headers = {"X-Amz-Invocation-Type": "Event"}  # queued by lambdas.py: never runs in this thread
        get_backend(account, region).invoke(arn, None, json.dumps(payload), headers, {})
    elif service == "states":
        from moto.stepfunctions.responses import get_backend as sfn_backend

        execution_input = json.dumps(payload)
        sfn_backend(account, region).start_execution(
            arn, name=str(uuid.uuid4()), execution_input=execution_input
        )
    elif service == "sns":
        from moto.sns.models import sns_backends

        sns_backends[account][region].publish(message=_as_text(payload), arn=arn)
    elif service == "sqs":
        from moto.sqs.models import sqs_backends

        sqs_backends[account][region].send_message(queue_name=resource, message_body=_as_text(payload))
    else:
        raise NotImplementedError(f"events to {arn} are not delivered by the embedded AWS")


def _arn_service(arn: str) -> str:
    parts = arn.split(":")
    return parts[2] if len(parts) > 2 else ""


def _as_text(payload: Any) -> str:
    return payload if isinstance(payload, str) else json.dumps(payload)


# --- target input ----------------------------------------------------------------------------------------


def _target_input(rule: Rule, target: Mapping[str, Any], event: Mapping[str, Any]) -> Any:
    """What the target receives: the event, or what its Input / InputPath / InputTransformer make of it."""
    shaped = aws_event(event)
    if "Input" in target:
        return json_or_text(target["Input"])
    if "InputPath" in target:
        return _json_path(target["InputPath"], shaped)
    if "InputTransformer" in target:
        return _transform(rule, target["InputTransformer"], shaped, event)
    return shaped


def aws_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """moto's internal event message in the shape AWS delivers: ISO time, no ingestion time."""
    shaped = {key: copy.deepcopy(value) for key, value in event.items() if key != "ingestion-time"}
    if isinstance(shaped.get("time"), int | float):
        shaped["time"] = datetime.fromtimestamp(shaped["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return shaped


def _transform(
    rule: Rule, transformer: Mapping[str, Any], event: dict[str, Any], raw: Mapping[str, Any]
) -> Any:
    """An InputTransformer: ``<name>`` placeholders from InputPathsMap plus the predefined ones."""
    text = str(transformer.get("InputTemplate", ""))
    values: dict[str, Any] = {
        name: _json_path(path, event) for name, path in transformer.get("InputPathsMap", {}).items()
    }
    values.update(
        {
            "aws.events.rule-arn": rule.arn,
            "aws.events.rule-name": rule.name,
            "aws.events.event.ingestion-time": raw.get("ingestion-time", event.get("time")),
            "aws.events.event.json": event,
        }
    )
    if text.lstrip()[:1] not in ("{", "["):  # a plain-text template takes the raw values
        for name, value in values.items():
            text = text.replace(f"<{name}>", value if isinstance(value, str) else json.dumps(value))
        return json_or_text(text)
    return json_or_text(_fill_json_template(text, values))


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


def _fill_json_template(text: str, values: Mapping[str, Any]) -> str:
    """As EventBridge fills a JSON template: a placeholder outside quotes becomes the value as JSON (a
    string gets its quotes); inside a quoted string it becomes the value's escaped text."""
    out, in_string, i = [], False, 0
    while i < len(text):
        match = _PLACEHOLDER.match(text, i)
        if match and match.group(1) in values:
            encoded = json.dumps(values[match.group(1)])
            out.append(encoded[1:-1] if in_string and encoded.startswith('"') else encoded)
            i = match.end()
            continue
        char = text[i]
        if char == '"' and (i == 0 or text[i - 1] != "\\"):
            in_string = not in_string
        out.append(char)
        i += 1
    return "".join(out)


def _json_path(path: str, data: Any) -> Any:
    from jsonpath_ng.ext.parser import parse

    matches = parse(path).find(data)
    return matches[0].value if matches else None


def json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
