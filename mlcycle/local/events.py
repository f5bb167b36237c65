"""EventBridge of the embedded AWS: rules deliver to Lambda, Step Functions and SNS; schedules fire.

moto's ``Rule.send_to_targets`` delivers only to SQS, CloudWatch Logs, buses, archives and API
destinations (a Lambda, Step Functions or SNS target raises ``NotImplementedError``). :func:`install`
wraps it: those three services are delivered here (Lambda asynchronously, through ``lambdas``), the rest
by moto's own code. moto stores scheduled rules and EventBridge Scheduler schedules but never fires them:
a ticker thread does, on a virtual clock running ``ctx.time_scale`` times faster than the wall clock.
"""

from __future__ import annotations

import calendar
import copy
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from mlcycle.local.context import LocalContext

if TYPE_CHECKING:
    from moto.events.models import Rule
    from moto.events.utils import EventMessageType
    from moto.scheduler.models import Schedule

_LOG = logging.getLogger(__name__)

#: Services whose targets moto cannot deliver to; everything else stays with moto.
_OUR_TARGETS = frozenset({"lambda", "states", "sns"})
#: Real seconds between two looks at the schedules (the resolution of scheduled firing).
TICK_SECONDS = 0.1

SendToTargets = Callable[..., None]


@dataclass
class _Installed:
    original: SendToTargets | None = None
    ticker: _Ticker | None = None


_STATE = _Installed()


# --- delivery --------------------------------------------------------------------------------------------


def put_platform_event(
    ctx: LocalContext, *, source: str, detail_type: str, detail: Mapping[str, Any], bus: str = "default"
) -> str:
    """Put an event on a bus as an AWS service would (rules fire); returns the event id."""
    from moto.events.models import events_backends

    entry = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail), "EventBusName": bus}
    result = events_backends[ctx.account][ctx.region].put_events([entry])[0]
    if "EventId" not in result:
        raise ValueError(f"event {detail_type!r} from {source!r} was rejected: {result}")
    return str(result["EventId"])


def _send_to_targets(rule: Rule, original_event: EventMessageType, transform_input: bool = True) -> None:
    """Replacement of ``Rule.send_to_targets``: our services here, the others through moto."""
    if rule.state != "ENABLED" or not rule.event_pattern.matches_event(original_event):
        return
    ours = [target for target in rule.targets if _arn_service(target["Arn"]) in _OUR_TARGETS]
    for target in ours:
        # AWS applies a target's input settings to every event; moto's transform_input=False only
        # marks events (S3's, replays) its own template parser cannot handle.
        payload = _target_input(rule, target, original_event)
        deliver(target["Arn"], payload)
    rest = [target for target in rule.targets if target not in ours]
    if rest and _STATE.original is not None:
        # A shallow copy with only moto's targets: the rule itself is shared with request threads.
        clone = copy.copy(rule)
        clone.targets = rest
        _STATE.original(clone, original_event, transform_input)


def deliver(arn: str, payload: Any) -> None:
    """Deliver an event or schedule payload to a Lambda, Step Functions, SNS or SQS target.

    Delivery is asynchronous in AWS: a failure is logged, never raised to whoever put the event.
    """
    try:
        _deliver(arn, payload)
    except Exception:  # any failure of one target must not affect the others or the caller
        _LOG.exception("could not deliver an event to %s", arn)


def _deliver(arn: str, payload: Any) -> None:
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
        _LOG.warning("events to %s are not delivered by the embedded AWS", arn)


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
        return _json_or_text(target["Input"])
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
        return _json_or_text(text)
    return _json_or_text(_fill_json_template(text, values))


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


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- schedule expressions --------------------------------------------------------------------------------

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_AT = re.compile(r"^at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name.upper(): number for number, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {name: number for number, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}
#: A cron expression that matches nothing within this many days never fires.
_CRON_SEARCH_DAYS = 366 * 8


@dataclass(frozen=True)
class CronExpression:
    """AWS's six-field cron: minutes hours day-of-month month day-of-week year.

    Supported: ``*``, ``?``, lists, ranges, steps, month and weekday names, ``L`` in day-of-month, ``nL``
    (last weekday n of the month) and ``n#k`` (k-th weekday n) in day-of-week; weekdays run 1=SUN..7=SAT.
    ``W`` (nearest weekday) is rejected rather than approximated.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    day_matches: Callable[[date], bool] = field(compare=False)

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        fields = text.split()
        if len(fields) != 6:
            raise ValueError(f"cron({text}) must have 6 fields, not {len(fields)}")
        minute, hour, day_of_month, month, day_of_week, year = fields
        if (day_of_month == "?") == (day_of_week == "?"):
            raise ValueError(f"cron({text}): exactly one of day-of-month and day-of-week must be '?'")
        return cls(
            minutes=_cron_field(minute, 0, 59),
            hours=_cron_field(hour, 0, 23),
            months=_cron_field(month, 1, 12, _MONTHS),
            years=_cron_field(year, 1970, 2199),
            day_matches=_day_matcher(day_of_month, day_of_week),
        )

    def next_after(self, after: datetime) -> datetime | None:
        """The first matching minute strictly after ``after`` (naive, in the expression's time zone)."""
        start = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
        day = start.date()
        for _ in range(_CRON_SEARCH_DAYS):
            if day.year in self.years and day.month in self.months and self.day_matches(day):
                earliest = (start.hour, start.minute) if day == start.date() else (0, 0)
                times = (
                    (h, m) for h in sorted(self.hours) for m in sorted(self.minutes) if (h, m) >= earliest
                )
                first = next(times, None)
                if first is not None:
                    return datetime.combine(day, clock_time(*first))
            day += timedelta(days=1)
        return None


def _cron_field(text: str, low: int, high: int, names: Mapping[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (_cron_value(value, names) for value in base.split("-", 1))
        else:
            first = _cron_value(base, names)
            last = high if step_text else first
        if not low <= first <= last <= high or step < 1:
            raise ValueError(f"cron field {text!r} is outside {low}-{high} or malformed")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _cron_value(text: str, names: Mapping[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ValueError(f"unsupported cron value {text!r}")
    return int(text)


def _day_matcher(day_of_month: str, day_of_week: str) -> Callable[[date], bool]:
    if day_of_month != "?":
        return _day_of_month_matcher(day_of_month)
    return _day_of_week_matcher(day_of_week)


def _day_of_month_matcher(text: str) -> Callable[[date], bool]:
    if text == "L":
        return lambda day: day.day == calendar.monthrange(day.year, day.month)[1]
    if "W" in text:
        raise ValueError(f"cron day-of-month {text!r}: 'W' is not supported by the embedded AWS")
    days = _cron_field(text, 1, 31)
    return lambda day: day.day in days


def _day_of_week_matcher(text: str) -> Callable[[date], bool]:
    if text.endswith("L"):  # nL: the last weekday n of the month
        weekday = _cron_value(text[:-1], _WEEKDAYS)
        return lambda day: _aws_weekday(day) == weekday and (day + timedelta(days=7)).month != day.month
    if "#" in text:  # n#k: the k-th weekday n of the month
        weekday_text, _, nth = text.partition("#")
        weekday = _cron_value(weekday_text, _WEEKDAYS)
        return lambda day: _aws_weekday(day) == weekday and (day.day - 1) // 7 + 1 == int(nth)
    weekdays = _cron_field(text, 1, 7, _WEEKDAYS)
    return lambda day: _aws_weekday(day) in weekdays


def _aws_weekday(day: date) -> int:
    """1=Sunday .. 7=Saturday (Python's weekday() is 0=Monday)."""
    return (day.weekday() + 1) % 7 + 1


def next_fire(expression: str, after: datetime, zone: str = "UTC") -> datetime | None:
    """When a schedule expression next fires strictly after ``after`` (aware); None if never again."""
    if rate := _RATE.match(expression):
        unit = rate.group(2).rstrip("s")
        return after + timedelta(seconds=int(rate.group(1)) * _UNIT_SECONDS[unit])
    tz = ZoneInfo(zone)
    local_after = after.astimezone(tz).replace(tzinfo=None)
    if cron := _CRON.match(expression):
        local = CronExpression.parse(cron.group(1)).next_after(local_after)
    elif at := _AT.match(expression):
        moment = datetime.fromisoformat(at.group(1))
        local = moment if moment > local_after else None
    else:
        raise ValueError(f"unsupported schedule expression {expression!r}")
    return local.replace(tzinfo=tz).astimezone(UTC) if local is not None else None


# --- firing ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Due:
    """Something that fires on a schedule expression."""

    key: str
    expression: str
    zone: str
    fire: Callable[[datetime], None]


def _scheduled_rules() -> Iterator[_Due]:
    from moto.events.models import events_backends

    # list() everywhere: request threads add and remove rules while this runs.
    for account in list(events_backends.values()):
        for backend in list(account.values()):
            for bus in list(backend.event_buses.values()):
                for rule in list(bus.rules.values()):
                    if rule.scheduled_expression and rule.state == "ENABLED":
                        key = f"{rule.arn}|{rule.scheduled_expression}"
                        yield _Due(key, rule.scheduled_expression, "UTC", _rule_firing(rule))


def _rule_firing(rule: Rule) -> Callable[[datetime], None]:
    def fire(when: datetime) -> None:
        # moto's internal message shape (epoch time, ingestion time): its own targets expect it.
        event: EventMessageType = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": rule.account_id,
            "time": when.timestamp(),
            "region": rule.region_name,
            "resources": [rule.arn],
            "detail": {},
            "ingestion-time": time.time(),
        }
        rule.send_to_targets(event)

    return fire


def _schedules() -> Iterator[_Due]:
    from moto.scheduler.models import scheduler_backends

    for account in list(scheduler_backends.values()):
        for backend in list(account.values()):
            for group in list(backend.schedule_groups.values()):
                for schedule in list(group.schedules.values()):
                    if schedule.state == "ENABLED":
                        zone = schedule.schedule_expression_timezone
                        key = f"{schedule.arn}|{schedule.schedule_expression}|{zone}"
                        firing = _schedule_firing(schedule, group.schedules)
                        yield _Due(key, schedule.schedule_expression, zone, firing)


def _schedule_firing(schedule: Schedule, group: dict[str, Schedule]) -> Callable[[datetime], None]:
    def fire(_when: datetime) -> None:  # Scheduler sends the target's Input as is, with no timestamp
        target = schedule.target
        deliver(target["Arn"], _json_or_text(target["Input"]) if target.get("Input") else {})
        if schedule.action_after_completion == "DELETE" and schedule.schedule_expression.startswith("at("):
            group.pop(schedule.name, None)

    return fire


class VirtualClock:
    """Wall-clock time sped up by a factor that may change while it runs (``ctx.time_scale``)."""

    def __init__(self) -> None:
        self._virtual = time.time()
        self._real = time.monotonic()

    def advance(self, scale: float) -> datetime:
        real = time.monotonic()
        self._virtual += (real - self._real) * scale
        self._real = real
        return datetime.fromtimestamp(self._virtual, UTC)


class _Ticker:
    """A thread firing scheduled rules and schedules when the virtual clock reaches them.

    A schedule seen for the first time is due one period (rate) or at its next match (cron, at) after
    that moment. When the clock runs faster than the tick, missed firings are skipped, not bunched.
    """

    def __init__(self, ctx: LocalContext) -> None:
        self._ctx = ctx
        self._clock = VirtualClock()
        self._due: dict[str, datetime | None] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlcycle-events-ticker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopped.wait(TICK_SECONDS):
            try:
                self.tick(self._clock.advance(self._ctx.time_scale))
            except Exception:  # a bad schedule must not stop the others from firing
                _LOG.exception("scheduled events tick failed")

    def tick(self, now: datetime) -> None:
        seen = set()
        for item in [*_scheduled_rules(), *_schedules()]:
            seen.add(item.key)
            self._tick_one(item, now)
        for key in set(self._due) - seen:
            del self._due[key]

    def _tick_one(self, item: _Due, now: datetime) -> None:
        if item.key not in self._due:
            self._due[item.key] = _next_or_none(item, now)
            return
        due = self._due[item.key]
        if due is None or due > now:
            return
        following = _next_or_none(item, due)
        self._due[item.key] = (
            _next_or_none(item, now) if following is not None and following <= now else following
        )
        _LOG.info("firing %s (%s)", item.key.split("|", 1)[0], item.expression)
        try:
            item.fire(due)
        except Exception:  # already rescheduled: a failing target fails once per firing, not per tick
            _LOG.exception("scheduled delivery of %s failed", item.key.split("|", 1)[0])


def _next_or_none(item: _Due, after: datetime) -> datetime | None:
    try:
        return next_fire(item.expression, after, item.zone)
    except (ValueError, KeyError) as exc:  # KeyError: unknown time zone
        _LOG.warning("%s never fires: %s", item.key.split("|", 1)[0], exc)
        return None


# --- install ---------------------------------------------------------------------------------------------


def install(ctx: LocalContext) -> None:
    """Deliver rule targets moto cannot, and start firing schedules (see the module docstring)."""
    if _STATE.original is not None:
        return  # already installed by an earlier start() in this process
    from moto.events.models import Rule

    _STATE.original = Rule.send_to_targets
    setattr(Rule, "send_to_targets", _send_to_targets)  # noqa: B010 - replacing a method
    _STATE.ticker = _Ticker(ctx)


def uninstall() -> None:
    """Restore moto's delivery and stop the ticker."""
    from moto.events.models import Rule

    if _STATE.original is not None:
        setattr(Rule, "send_to_targets", _STATE.original)  # noqa: B010
        _STATE.original = None
    if _STATE.ticker is not None:
        _STATE.ticker.stop()
        _STATE.ticker = None
