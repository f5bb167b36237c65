"""CloudWatch alarms, evaluated: moto stores alarms and metric data but never evaluates an alarm.

:class:`AlarmEvaluator` does what CloudWatch does for a metric alarm, from moto's stored alarm and data:

* the alarm's value per period: its metric's ``Statistic`` (Sum, Average, Minimum, Maximum,
  SampleCount) or ``ExtendedStatistic`` (``pNN``, nearest rank; ``PR(low:high)``, the percentile rank:
  the percentage of values above ``low`` and at most ``high``), or a metric-math expression over
  ``Metrics`` queries (arithmetic of query ids and numbers; a division by zero is no value, as in
  CloudWatch);
* the last ``EvaluationPeriods`` complete periods; ``DatapointsToAlarm`` of them breaching (``M out of
  N``; ``N`` by default) means ALARM, otherwise OK;
* ``TreatMissingData``: ``missing`` (the default: missing periods do not count; none at all means
  INSUFFICIENT_DATA), ``notBreaching``, ``breaching``, ``ignore`` (keep the current state);
* a state change updates the alarm (``DescribeAlarms`` shows it), puts a ``CloudWatch Alarm State
  Change`` event on the default bus, and, when actions are enabled, publishes CloudWatch's alarm message
  to each SNS topic among the new state's actions.

It runs on the embedded AWS's ticker, so a rollback or an alert happens because an alarm fired, never
because a test said so. Composite alarms are evaluated after these (mlcycle.local.cloudwatch.composite).
Not emulated: anomaly-detection bands, metric-insights queries, cross-account metrics and the other
extended statistics (TM, WM, TC, TS, IQM) (such an alarm goes INSUFFICIENT_DATA, naming the reason).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

_LOG = logging.getLogger(__name__)

ALARM, OK, INSUFFICIENT = "ALARM", "OK", "INSUFFICIENT_DATA"
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_PERCENTILE_RANK = re.compile(r"PR\(\s*([^:\s)]*)\s*:\s*([^:\s)]*)\s*\)")
_ARITHMETIC: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class UnsupportedAlarmError(ValueError):
    """The alarm uses a CloudWatch feature the embedded AWS does not evaluate."""


@dataclass(frozen=True)
class Transition:
    alarm_name: str
    alarm_arn: str
    old: str
    new: str
    reason: str
    reason_data: dict[str, Any]
    at: datetime


PutEvent = Callable[[str, str, dict[str, Any], list[str]], None]  # source, detail type, detail, resources
Publish = Callable[[str, str, str], None]  # topic ARN, subject, message


class AlarmEvaluator:
    """Evaluates every metric alarm of one moto CloudWatch backend at a given time."""

    def __init__(self, backend: Any, *, put_event: PutEvent, publish: Publish) -> None:
        self.backend = backend
        self.put_event = put_event
        self.publish = publish

    def evaluate(self, now: datetime | None = None) -> list[Transition]:
        """Evaluate each alarm as of ``now``; apply and announce the state changes; return them."""
        moment = _utc(now or datetime.now(UTC))
        changes = []
        for alarm in list(self.backend.alarms.values()):
            if getattr(alarm, "rule", None):
                continue  # composite alarms: not evaluated (the module's doc says so)
            change = self._evaluate_one(alarm, moment)
            if change is not None:
                changes.append(change)
                self._announce(alarm, change)
        return changes

    def _evaluate_one(self, alarm: Any, now: datetime) -> Transition | None:
        try:
            new, reason, data = decide(alarm, self._series(alarm, now), now)
        except UnsupportedAlarmError as error:
            new, reason, data = INSUFFICIENT, f"Not evaluated by the embedded AWS: {error}", {}
        old = str(alarm.state_value)
        if new == old or (new is None):
            return None
        alarm.update_state(reason, json.dumps(data), new)
        return Transition(alarm.name, alarm.alarm_arn, old, new, reason, data, now)

    def _series(self, alarm: Any, now: datetime) -> list[float | None]:
        """The alarm's value for each of its last ``EvaluationPeriods`` complete periods, oldest first."""
        period = _period(alarm)
        end = _floor(now, period)
        starts = [end - timedelta(seconds=period * i) for i in range(int(alarm.evaluation_periods), 0, -1)]
        data = [
            d for d in self.backend.metric_data if _utc(d.timestamp) >= starts[0] and _utc(d.timestamp) < end
        ]
        if not alarm.metric_data_queries:
            metric = (alarm.namespace, alarm.metric_name, _dims(alarm.dimensions))
            stat = alarm.extended_statistic or alarm.statistic
            return [_statistic(_values(data, metric, s, period), stat) for s in starts]
        return [_expression_value(alarm.metric_data_queries, data, s, period) for s in starts]

    def _announce(self, alarm: Any, change: Transition) -> None:
        detail = _event_detail(alarm, change)
        self.put_event("aws.cloudwatch", "CloudWatch Alarm State Change", detail, [alarm.alarm_arn])
        if not alarm.actions_enabled:
            return
        actions = {
            ALARM: alarm.alarm_actions,
            OK: alarm.ok_actions,
            INSUFFICIENT: alarm.insufficient_data_actions,
        }
        for target in actions.get(change.new) or []:
            if ":sns:" in target:
                subject = f'{change.new}: "{alarm.name}" in {alarm.region_name}'
                self.publish(target, subject[:100], json.dumps(_sns_message(alarm, change)))
            else:
                _LOG.warning(
                    "alarm %s: action %s is not run by the embedded AWS (only SNS)", alarm.name, target
                )


def decide(
    alarm: Any, series: Sequence[float | None], now: datetime
) -> tuple[str | None, str, dict[str, Any]]:
    """The alarm's new state from its per-period values (None: no data in that period)."""
    compare = _COMPARE.get(str(alarm.comparison_operator))
    if compare is None:
        raise UnsupportedAlarmError(f"comparison {alarm.comparison_operator}")
    threshold = float(alarm.threshold)
    needed = int(alarm.datapoints_to_alarm or alarm.evaluation_periods)
    treatment = alarm.treat_missing_data or "missing"
    present = [v for v in series if v is not None]
    missing = len(series) - len(present)
    breaching = sum(compare(v, threshold) for v in present)
    if treatment == "breaching":
        breaching += missing
    data = {
        "version": "1.0",
        "queryDate": now.isoformat(),
        "recentDatapoints": present,
        "threshold": threshold,
    }
    if not present and treatment in ("missing", "ignore"):
        if treatment == "ignore":
            return None, "", data
        return INSUFFICIENT, f"Insufficient Data: {len(series)} datapoints were unknown.", data
    word = str(alarm.comparison_operator).replace("Threshold", "").replace("Than", " than ").lower().strip()
    shown = ", ".join(f"{v:g}" for v in present) or "no datapoints"
    seen = f"{breaching} out of the last {len(series)} datapoints [{shown}]"
    if breaching >= needed:
        return ALARM, f"Threshold Crossed: {seen} were {word} the threshold ({threshold:g}).", data
    return OK, f"Threshold Crossed: {seen} breached the threshold ({threshold:g}); {needed} needed.", data


# ---- statistics ----------------------------------------------------------------------------------------


def _statistic(values: list[float], stat: str | None) -> float | None:
    if not values:
        return None
    if stat in (None, "Average"):
        return sum(values) / len(values)
    if stat == "Sum":
        return float(sum(values))
    if stat == "Minimum":
        return min(values)
    if stat == "Maximum":
        return max(values)
    if stat == "SampleCount":
        return float(len(values))
    if stat.startswith("p") and _is_number(stat[1:]):
        ordered = sorted(values)
        rank = max(1, math.ceil(float(stat[1:]) / 100 * len(ordered)))
        return ordered[rank - 1]
    bounds = _PERCENTILE_RANK.fullmatch(stat)
    if bounds and all(b == "" or _is_number(b) for b in bounds.groups()):
        low_text, high_text = bounds.groups()
        low = float(low_text) if low_text else -math.inf
        high = float(high_text) if high_text else math.inf
        return 100.0 * sum(low < v <= high for v in values) / len(values)
    raise UnsupportedAlarmError(f"statistic {stat}")


def _values(
    data: Iterable[Any], metric: tuple[str, str, frozenset[tuple[str, str]]], start: datetime, period: int
) -> list[float]:
    namespace, name, dimensions = metric
    end = start + timedelta(seconds=period)
    out = []
    for datum in data:
        if datum.namespace != namespace or datum.name != name or not start <= _utc(datum.timestamp) < end:
            continue
        if _dims(datum.dimensions) != dimensions:
            continue  # CloudWatch matches a metric by its exact set of dimensions
        if hasattr(datum, "value"):
            out.append(float(datum.value))
        else:  # StatisticValues: only Sum/Average/SampleCount-style uses are faithful; spread the mean
            out += [float(datum.sum) / float(datum.sample_count)] * int(datum.sample_count)
    return out


def _expression_value(queries: Sequence[Any], data: list[Any], start: datetime, period: int) -> float | None:
    values: dict[str, float | None] = {}
    for query in queries:
        if query.metric_stat is not None:
            stat = query.metric_stat
            metric = (stat.metric.namespace, stat.metric.metric_name, _dims(stat.metric.dimensions))
            values[query.id] = _statistic(_values(data, metric, start, int(stat.period or period)), stat.stat)
    for query in queries:
        if query.expression:
            values[query.id] = _evaluate(query.expression, values)
    returned = [q for q in queries if q.return_data in (True, None, "true")]
    if len(returned) != 1:
        raise UnsupportedAlarmError("an alarm's queries must return exactly one series")
    return values.get(returned[0].id)


def _evaluate(expression: str, values: dict[str, float | None]) -> float | None:
    """Arithmetic over query ids; any missing operand or a division by zero gives no value."""

    def walk(node: ast.AST) -> float | None:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise UnsupportedAlarmError(f"unknown id {node.id!r} in {expression!r}")
            return values[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = walk(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            left, right = walk(node.left), walk(node.right)
            if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
                return None
            return _ARITHMETIC[type(node.op)](left, right)
        raise UnsupportedAlarmError(f"metric math {expression!r} (only arithmetic of ids and numbers)")

    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        raise UnsupportedAlarmError(f"metric math {expression!r}") from error
    return walk(tree)


# ---- messages ------------------------------------------------------------------------------------------


def _event_detail(alarm: Any, change: Transition) -> dict[str, Any]:
    def state(value: str, reason: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "value": value,
            "reason": reason,
            "reasonData": json.dumps(data),
            "timestamp": change.at.isoformat(),
        }

    return {
        "alarmName": alarm.name,
        "state": state(change.new, change.reason, change.reason_data),
        "previousState": state(change.old, "", {}),
        "configuration": {"description": alarm.description or "", "metrics": _metrics_config(alarm)},
    }


def _metrics_config(alarm: Any) -> list[dict[str, Any]]:
    if not alarm.metric_data_queries:
        stat = alarm.extended_statistic or alarm.statistic
        metric = {
            "namespace": alarm.namespace,
            "name": alarm.metric_name,
            "dimensions": dict(_dims(alarm.dimensions)),
        }
        return [
            {
                "id": "m1",
                "metricStat": {"metric": metric, "period": alarm.period, "stat": stat},
                "returnData": True,
            }
        ]
    out = []
    for query in alarm.metric_data_queries:
        entry: dict[str, Any] = {"id": query.id, "returnData": bool(query.return_data)}
        if query.expression:
            entry["expression"] = query.expression
        if query.metric_stat is not None:
            m = query.metric_stat.metric
            metric = {
                "namespace": m.namespace,
                "name": m.metric_name,
                "dimensions": dict(_dims(m.dimensions)),
            }
            entry["metricStat"] = {
                "metric": metric,
                "period": query.metric_stat.period,
                "stat": query.metric_stat.stat,
            }
        out.append(entry)
    return out


def _sns_message(alarm: Any, change: Transition) -> dict[str, Any]:
    return {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": alarm.alarm_arn.split(":")[4],
        "NewStateValue": change.new,
        "NewStateReason": change.reason,
        "StateChangeTime": change.at.isoformat(),
        "Region": alarm.region_name,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": change.old,
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "Statistic": alarm.statistic,
            "ExtendedStatistic": alarm.extended_statistic,
            "Dimensions": [{"name": n, "value": v} for n, v in sorted(_dims(alarm.dimensions))],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data or "missing",
        },
    }


# ---- helpers -------------------------------------------------------------------------------------------


def _period(alarm: Any) -> int:
    if alarm.period:
        return int(alarm.period)
    periods = {int(q.metric_stat.period) for q in alarm.metric_data_queries if q.metric_stat is not None}
    if len(periods) != 1:
        raise UnsupportedAlarmError("metric queries with different periods")
    return periods.pop()


def _floor(moment: datetime, period: int) -> datetime:
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % period, UTC)


def _utc(moment: datetime) -> datetime:
    """moto keeps timestamps as naive UTC datetimes."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _dims(dimensions: Iterable[Any]) -> frozenset[tuple[str, str]]:
    out = set()
    for d in dimensions or []:
        if isinstance(d, dict):
            out.add((str(d.get("Name", d.get("name"))), str(d.get("Value", d.get("value")))))
        else:
            out.add((str(d.name), str(d.value)))
    return frozenset(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
