"""CloudWatch composite alarms, evaluated: moto 5.2.5 does not even accept ``PutCompositeAlarm``.

:func:`install_api` makes moto store a composite alarm (as an alarm with its ``AlarmRule``; it shows
under ``CompositeAlarms`` in ``DescribeAlarms``), created in ``INSUFFICIENT_DATA`` as in AWS (an update
keeps the state). :class:`CompositeEvaluator` runs after the metric alarms on each tick:

* the rule: ``ALARM(x)``, ``OK(x)``, ``INSUFFICIENT_DATA(x)`` (``x`` an alarm's name or ARN, quoted or
  not), ``TRUE``, ``FALSE``, ``NOT``, ``AND``, ``OR`` and parentheses; NOT binds tighter than AND, AND
  tighter than OR (CloudWatch's documentation shows no precedence; parenthesize, as the CDK does);
* true means ALARM, false OK; a composite over composites settles in one evaluation (repeated until no
  state changes, at most once per composite);
* a state change updates the alarm, puts a ``CloudWatch Alarm State Change`` event with the composite's
  detail (``configuration.alarmRule``, ``reasonData`` = ``{"triggeringAlarms": [...]}``) and publishes
  CloudWatch's composite SNS message (``AlarmRule``, ``TriggeringChildren``) to the new state's actions.

Not emulated: actions suppressors (``ActionsSuppressor*``), and rules naming alarms that do not exist
(AWS rejects them; here such a child counts as INSUFFICIENT_DATA and a warning is logged).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlcycle.local import faults
from mlcycle.local.cloudwatch.alarms import ALARM, INSUFFICIENT, OK, Publish, PutEvent, Transition
from mlcycle.local.patching import MethodPatches

_LOG = logging.getLogger(__name__)
_STATES = (ALARM, OK, INSUFFICIENT)


class RuleSyntaxError(ValueError):
    """The alarm rule is not CloudWatch's composite alarm rule syntax."""


# ---- the rule ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateIs:
    state: str
    alarm: str  # a name or an ARN, as written


@dataclass(frozen=True)
class Constant:
    value: bool


@dataclass(frozen=True)
class Not:
    operand: Rule


@dataclass(frozen=True)
class AllOf:
    operands: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    operands: tuple[Rule, ...]


Rule = StateIs | Constant | Not | AllOf | AnyOf

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>\() | (?P<close>\)) |
        (?P<quoted>"(?:[^"\\]|\\.)*") |
        (?P<word>[^\s()"]+)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[str]:
    out, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise RuleSyntaxError(f"cannot read the alarm rule at {text[position:]!r}")
        out.append(match.group(match.lastgroup or 0))
        position = match.end()
    return out


def parse_rule(text: str) -> Rule:
    """Parse a composite alarm's ``AlarmRule``."""
    tokens = _tokens(text)
    if not tokens:
        raise RuleSyntaxError("the alarm rule is empty")
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal position
        token = peek()
        if token is None or (expected is not None and token.upper() != expected):
            raise RuleSyntaxError(f"expected {expected or 'more'} in {text!r}, found {token!r}")
        position += 1
        return token

    def disjunction() -> Rule:
        operands = [conjunction()]
        while (peek() or "").upper() == "OR":
            take("OR")
            operands.append(conjunction())
        return operands[0] if len(operands) == 1 else AnyOf(tuple(operands))

    def conjunction() -> Rule:
        operands = [negation()]
        while (peek() or "").upper() == "AND":
            take("AND")
            operands.append(negation())
        return operands[0] if len(operands) == 1 else AllOf(tuple(operands))

    def negation() -> Rule:
        if (peek() or "").upper() == "NOT":
            take("NOT")
            return Not(negation())
        return atom()

    def atom() -> Rule:
        token = take()
        word = token.upper()
        if token == "(":
            inner = disjunction()
            take(")")
            return inner
        if word in ("TRUE", "FALSE"):
            return Constant(word == "TRUE")
        if word in _STATES:
            take("(")
            name = take()
            if name in ("(", ")"):
                raise RuleSyntaxError(f"{word}() needs an alarm name or ARN in {text!r}")
            take(")")
            if name.startswith('"'):
                name = json.loads(name)
            return StateIs(word, name)
        raise RuleSyntaxError(f"unexpected {token!r} in {text!r}")

    rule = disjunction()
    if peek() is not None:
        raise RuleSyntaxError(f"unexpected {peek()!r} in {text!r}")
    return rule


def evaluate_rule(rule: Rule, state_of: Callable[[str], str]) -> bool:
    """Whether the rule holds, given each referenced alarm's state (by name or ARN, as written)."""
    if isinstance(rule, StateIs):
        return state_of(rule.alarm) == rule.state
    if isinstance(rule, Constant):
        return rule.value
    if isinstance(rule, Not):
        return not evaluate_rule(rule.operand, state_of)
    if isinstance(rule, AllOf):
        return all(evaluate_rule(r, state_of) for r in rule.operands)
    return any(evaluate_rule(r, state_of) for r in rule.operands)


def references(rule: Rule) -> list[str]:
    """The alarms a rule names, in order of appearance, each once."""
    if isinstance(rule, StateIs):
        return [rule.alarm]
    if isinstance(rule, Not):
        return references(rule.operand)
    if isinstance(rule, AllOf | AnyOf):
        return list(dict.fromkeys(name for r in rule.operands for name in references(r)))
    return []


def alarm_name(reference: str) -> str:
    """``arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME`` -> ``NAME``; a name stays as it is."""
    return reference.split(":alarm:", 1)[1] if reference.startswith("arn:") else reference


# ---- the API moto lacks --------------------------------------------------------------------------------


def install_api(patches: MethodPatches) -> None:
    """``PutCompositeAlarm`` stores the alarm in moto (its ``PutMetricAlarm`` reads ``AlarmRule`` too)."""
    from moto.cloudwatch.responses import CloudWatchResponse

    def put_composite_alarm(self: Any) -> Any:
        name = self._get_param("AlarmName")
        existing = self.cloudwatch_backend.alarms.get(name)
        rule = self._get_param("AlarmRule")
        parse_rule(rule)  # a rule CloudWatch would reject is refused here too
        result = CloudWatchResponse.put_metric_alarm(self)
        alarm = self.cloudwatch_backend.alarms[name]
        if existing is None:  # AWS: created in INSUFFICIENT_DATA, then evaluated
            alarm.state_value, alarm.state_reason = INSUFFICIENT, "Unchecked: Initial alarm creation"
        else:
            alarm.state_value, alarm.state_reason = existing.state_value, existing.state_reason
            alarm.state_reason_data = existing.state_reason_data
        return result

    patches.replace(CloudWatchResponse, "put_composite_alarm", put_composite_alarm)


# ---- evaluation ----------------------------------------------------------------------------------------


class CompositeEvaluator:
    """Evaluates every composite alarm of one moto CloudWatch backend, after its metric alarms."""

    def __init__(self, backend: Any, *, put_event: PutEvent, publish: Publish) -> None:
        self.backend = backend
        self.put_event = put_event
        self.publish = publish
        self.changed_at: dict[str, datetime] = {}  # alarm name -> when the evaluators last changed it
        self.unreadable: set[tuple[str, str]] = set()  # (alarm, rule) already reported as a fault

    def evaluate(
        self, now: datetime | None = None, changes: list[Transition] | None = None
    ) -> list[Transition]:
        """Evaluate each composite against its children's states now; apply, announce and return changes.

        ``changes``: the metric alarms' transitions of this tick (they become the triggering children).
        """
        moment = now or datetime.now(UTC)
        recent = {c.alarm_name: c for c in changes or []}
        for change in recent.values():
            self.changed_at[change.alarm_name] = change.at
        composites = [a for a in list(self.backend.alarms.values()) if getattr(a, "rule", None)]
        out: list[Transition] = []
        for _ in range(max(1, len(composites))):
            settled = True
            for alarm in composites:
                moved = self._evaluate_one(alarm, moment, recent)
                if moved is not None:
                    out.append(moved)
                    recent[alarm.name] = moved
                    self.changed_at[alarm.name] = moment
                    settled = False
            if settled:
                break
        return out

    def _state_of(self, reference: str) -> str:
        child = self.backend.alarms.get(alarm_name(reference))
        if child is None:
            _LOG.warning("composite alarm rule names %s, which does not exist", reference)
            return INSUFFICIENT
        return str(child.state_value)

    def _evaluate_one(self, alarm: Any, now: datetime, recent: Mapping[str, Transition]) -> Transition | None:
        try:
            rule = parse_rule(alarm.rule)
        except RuleSyntaxError as error:  # PutCompositeAlarm refuses these; one may come another way
            if (alarm.name, alarm.rule) not in self.unreadable:
                self.unreadable.add((alarm.name, alarm.rule))
                faults.record(f"composite alarm {alarm.name} is never evaluated", error)
            return None
        new = ALARM if evaluate_rule(rule, self._state_of) else OK
        old = str(alarm.state_value)
        if new == old:
            return None
        children = [c for c in references(rule) if alarm_name(c) in self.backend.alarms]
        triggering = [c for c in children if alarm_name(c) in recent] or children
        data = {"triggeringAlarms": [self._child(c, now) for c in triggering]}
        reason = self._reason(alarm, triggering, recent, new, now)
        alarm.update_state(reason, json.dumps(data), new)
        change = Transition(alarm.name, alarm.alarm_arn, old, new, reason, data, now)
        self._announce(alarm, change, rule)
        return change

    def _child(self, reference: str, now: datetime) -> dict[str, Any]:
        child = self.backend.alarms[alarm_name(reference)]
        at = self.changed_at.get(child.name) or _as_utc(child.state_updated_timestamp)
        return {"arn": child.alarm_arn, "state": {"value": child.state_value, "timestamp": _stamp(at)}}

    def _reason(
        self, alarm: Any, triggering: list[str], recent: Mapping[str, Transition], new: str, now: datetime
    ) -> str:
        moved = [recent[alarm_name(c)] for c in triggering if alarm_name(c) in recent]
        if moved:  # as CloudWatch words it: the child whose change moved the composite
            child = moved[-1]
            return f"{child.alarm_arn} transitioned to {child.new} at {_spoken(child.at)}"
        return f"{alarm.alarm_arn} was evaluated and its alarm rule evaluates to {new}"

    def _announce(self, alarm: Any, change: Transition, rule: Rule) -> None:
        previous = {"value": change.old, "reason": "", "reasonData": "{}", "timestamp": _stamp(change.at)}
        detail = {
            "alarmName": alarm.name,
            "state": {
                "value": change.new,
                "reason": change.reason,
                "reasonData": json.dumps(change.reason_data),
                "timestamp": _stamp(change.at),
            },
            "previousState": previous,
            "configuration": {"alarmRule": alarm.rule, "description": alarm.description or ""},
        }
        self.put_event("aws.cloudwatch", "CloudWatch Alarm State Change", detail, [alarm.alarm_arn])
        if not alarm.actions_enabled:
            return
        actions = {
            ALARM: alarm.alarm_actions,
            OK: alarm.ok_actions,
            INSUFFICIENT: alarm.insufficient_data_actions,
        }
        for target in actions.get(change.new) or []:
            if ":sns:" not in target:
                _LOG.warning("composite alarm %s: action %s is not run (only SNS)", alarm.name, target)
                continue
            subject = f'{change.new}: "{alarm.name}" in {alarm.region_name}'
            self.publish(target, subject[:100], json.dumps(_sns_message(alarm, change)))


def _sns_message(alarm: Any, change: Transition) -> dict[str, Any]:
    children = [
        {"Arn": c["arn"], "State": {"Value": c["state"]["value"], "Timestamp": c["state"]["timestamp"]}}
        for c in change.reason_data["triggeringAlarms"]
    ]
    return {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": alarm.alarm_arn.split(":")[4],
        "NewStateValue": change.new,
        "NewStateReason": change.reason,
        "StateChangeTime": _stamp(change.at),
        "Region": alarm.region_name,
        "AlarmArn": alarm.alarm_arn,
        "OKActions": list(alarm.ok_actions or []),
        "AlarmActions": list(alarm.alarm_actions or []),
        "InsufficientDataActions": list(alarm.insufficient_data_actions or []),
        "OldStateValue": change.old,
        "AlarmRule": alarm.rule,
        "TriggeringChildren": children,
    }


def _as_utc(moment: datetime) -> datetime:
    """moto keeps naive UTC datetimes."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    """CloudWatch's timestamps in events and messages: ``2022-07-22T15:57:45.394+0000``."""
    utc = _as_utc(moment)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def _spoken(moment: datetime) -> str:
    """``Friday 22 July, 2022 15:57:45 UTC``, as composite alarm reasons say it."""
    utc = _as_utc(moment)
    return f"{utc:%A} {utc.day} {utc:%B, %Y %H:%M:%S} UTC"
