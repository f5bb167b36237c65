"""Scheduled firing in the embedded AWS: moto stores scheduled rules and EventBridge Scheduler schedules
but never fires them. A ticker thread does, on a virtual clock running ``ctx.time_scale`` times faster
than the wall clock; other services (CloudWatch alarm evaluation) run on the same ticker.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlcycle.local import faults
from mlcycle.local.context import LocalContext
from mlcycle.local.events.cron import next_fire
from mlcycle.local.events.delivery import deliver, json_or_text

if TYPE_CHECKING:
    from moto.events.models import Rule
    from moto.events.utils import EventMessageType
    from moto.scheduler.models import Schedule

_LOG = logging.getLogger(__name__)

#: Real seconds between two looks at the schedules (the resolution of scheduled firing).
TICK_SECONDS = 0.1


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
        deliver(target, json_or_text(target["Input"]) if target.get("Input") else {}, source=schedule.arn)
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


class Ticker:
    """A thread firing scheduled rules and schedules when the virtual clock reaches them.

    A schedule seen for the first time is due one period (rate) or at its next match (cron, at) after
    that moment. When the clock runs faster than the tick, missed firings are skipped, not bunched.
    """

    def __init__(self, ctx: LocalContext) -> None:
        self._ctx = ctx
        self._clock = VirtualClock()
        self._due: dict[str, datetime | None] = {}
        #: Other periodic work on this thread (CloudWatch alarm evaluation), called with the wall clock.
        self.periodic: list[Callable[[datetime], object]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlcycle-events-ticker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def due_times(self) -> dict[str, datetime | None]:
        """When each schedule is next due: kept through a restart, so that a schedule keeps its phase (a
        firing missed while the embedded AWS was down happens at the first tick after it)."""
        return dict(self._due)

    def keep_due(self, due: dict[str, datetime | None]) -> None:
        self._due.update(due)

    def _loop(self) -> None:
        while not self._stopped.wait(TICK_SECONDS):
            try:
                self.tick(self._clock.advance(self._ctx.time_scale))
            except Exception as exc:  # a bad schedule must not stop the others from firing
                faults.record("scheduled events tick failed", exc, self._ctx)
            for work in list(self.periodic):
                try:
                    work(datetime.now(UTC))
                except Exception as exc:  # one service's failure must not stop the others' work
                    faults.record(
                        f"periodic work {getattr(work, '__qualname__', work)} failed", exc, self._ctx
                    )

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
        except Exception as exc:  # already rescheduled: a failing target fails once per firing, not per tick
            faults.record(f"scheduled delivery of {item.key.split('|', 1)[0]} failed", exc)


def _next_or_none(item: _Due, after: datetime) -> datetime | None:
    try:
        return next_fire(item.expression, after, item.zone)
    except (ValueError, KeyError) as exc:  # KeyError: unknown time zone
        faults.record(f"{item.key.split('|', 1)[0]} never fires", exc)
        return None
