"""EventBridge in the embedded AWS: delivery to the targets moto cannot reach (delivery), schedule
expressions (cron), and the ticker that fires scheduled rules and Scheduler schedules (schedules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlcycle.local import context
from mlcycle.local.context import LocalContext
from mlcycle.local.events.cron import CronExpression, next_fire
from mlcycle.local.events.delivery import (
    DeliveryState,
    aws_event,
    deliver,
    put_platform_event,
    send,
    send_to_targets,
)
from mlcycle.local.events.retries import RetryingDelivery
from mlcycle.local.events.schedules import TICK_SECONDS, Ticker, VirtualClock

__all__ = [
    "TICK_SECONDS",
    "CronExpression",
    "EventsState",
    "Ticker",
    "VirtualClock",
    "aws_event",
    "deliver",
    "install",
    "next_fire",
    "put_platform_event",
    "ticker",
    "uninstall",
]


@dataclass
class EventsState:
    ticker: Ticker


def install(ctx: LocalContext) -> None:
    """Deliver rule targets moto cannot, and start firing schedules."""
    from moto.events.models import Rule

    uninstall_from(ctx)
    if Rule.send_to_targets is send_to_targets:
        raise RuntimeError("another embedded AWS is still installed in this process: stop it first")
    retrying = RetryingDelivery(send, lambda: ctx.time_scale)
    ctx.services[DeliveryState] = DeliveryState(original=Rule.send_to_targets, retrying=retrying)
    setattr(Rule, "send_to_targets", send_to_targets)  # noqa: B010 - replacing a method
    ctx.services[EventsState] = EventsState(ticker=Ticker(ctx))


def ticker() -> Ticker:
    """The running ticker (other services add their periodic work to it)."""
    return context.installed(EventsState).ticker


def suspend_retries(ctx: LocalContext) -> list[dict[str, Any]]:
    """Stop retrying deliveries; return those waiting for a retry, for a restart to keep."""
    state: DeliveryState | None = ctx.services.get(DeliveryState)
    if state is None:
        return []
    state.retrying.stop()
    return state.retrying.waiting()


def resume_retries(ctx: LocalContext, waiting: list[dict[str, Any]]) -> int:
    """Retry what :func:`suspend_retries` kept; return how many deliveries that is."""
    context.installed(DeliveryState).retrying.resume(waiting)
    return len(waiting)


def uninstall() -> None:
    """Restore moto's delivery and stop the ticker."""
    ctx = context.running()
    if ctx is not None:
        uninstall_from(ctx)


def uninstall_from(ctx: LocalContext) -> None:
    from moto.events.models import Rule

    delivery = ctx.services.pop(DeliveryState, None)
    if delivery is not None:
        setattr(Rule, "send_to_targets", delivery.original)  # noqa: B010
        delivery.retrying.stop()
    state = ctx.services.pop(EventsState, None)
    if state is not None:
        state.ticker.stop()
