"""CloudWatch in the embedded AWS: what moto stores but never does. Alarms are evaluated on the
embedded AWS's ticker (at most once a second), so their state changes, events and SNS actions happen
as the metric data arrives (mlcycle.local.cloudwatch.alarms); composite alarms right after them, on the
metric alarms' new states (mlcycle.local.cloudwatch.composite)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlcycle.local import context, events
from mlcycle.local.cloudwatch.alarms import AlarmEvaluator, Transition
from mlcycle.local.cloudwatch.composite import CompositeEvaluator, install_api
from mlcycle.local.context import LocalContext
from mlcycle.local.patching import MethodPatches

#: Wall-clock seconds between two evaluations of the alarms.
EVALUATE_EVERY_SECONDS = 1.0


@dataclass
class CloudWatchState:
    evaluator: AlarmEvaluator
    composites: CompositeEvaluator
    patches: MethodPatches
    last: float = 0.0
    transitions: list[Transition] = field(default_factory=list)

    def tick(self, now: datetime) -> None:
        if time.monotonic() - self.last < EVALUATE_EVERY_SECONDS:
            return
        self.last = time.monotonic()
        self.evaluate(now)

    def evaluate(self, now: datetime | None = None) -> list[Transition]:
        """The metric alarms, then the composite alarms on their new states."""
        changes = self.evaluator.evaluate(now)
        changes += self.composites.evaluate(now, changes)
        self.transitions += changes
        return changes


def install(ctx: LocalContext) -> None:
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.sns.models import sns_backends

    def put_event(source: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        events.put_platform_event(
            ctx, source=source, detail_type=detail_type, detail=detail, resources=resources
        )

    def publish(topic_arn: str, subject: str, message: str) -> None:
        region = topic_arn.split(":")[3]
        sns_backends[ctx.account][region].publish(message, arn=topic_arn, subject=subject)

    backend = cloudwatch_backends[ctx.account][ctx.region]
    patches = MethodPatches()
    install_api(patches)
    state = CloudWatchState(
        AlarmEvaluator(backend, put_event=put_event, publish=publish),
        CompositeEvaluator(backend, put_event=put_event, publish=publish),
        patches,
    )
    ctx.services[CloudWatchState] = state
    events.ticker().periodic.append(state.tick)


def evaluate_now() -> list[Transition]:
    """Evaluate the alarms at once (tests; the ticker does it every second)."""
    return context.installed(CloudWatchState).evaluate()


def uninstall() -> None:
    ctx = context.running()
    state = ctx.services.pop(CloudWatchState, None) if ctx is not None else None
    if state is None:
        return
    state.patches.restore()
    ticker = context.installed_or_none(events.EventsState)
    if ticker is not None and state.tick in ticker.ticker.periodic:
        ticker.ticker.periodic.remove(state.tick)
