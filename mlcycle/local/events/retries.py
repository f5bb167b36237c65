"""Retries and dead-letter queues of EventBridge targets (rules and Scheduler schedules) in the embedded AWS.

As in AWS, a delivery that fails for a retriable reason (throttling, a failing service) is retried with
exponential backoff and jitter until the target's ``RetryPolicy`` is spent (``MaximumRetryAttempts``,
default 185; ``MaximumEventAgeInSeconds``, default 24 hours). One that fails because the target does not
exist or refuses access is not retried. Either way the event then goes to the target's
``DeadLetterConfig`` queue, with the attributes EventBridge sets (``RULE_ARN``, ``TARGET_ARN``,
``ERROR_CODE``, ``ERROR_MESSAGE``, ``RETRY_ATTEMPTS``, and ``EXHAUSTED_RETRY_CONDITION`` after retries).
Without a dead-letter queue the event is dropped, as in AWS, and the drop is logged as an error.

Retry delays follow the embedded AWS's clock: they are divided by its ``time_scale``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlcycle.local import faults

DEFAULT_RETRIES = 185
DEFAULT_MAX_AGE_SECONDS = 24 * 3600
#: The first retry waits about this long; each next one twice as long, up to :data:`MAX_DELAY_SECONDS`.
FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 300.0

#: Errors EventBridge does not retry (the target is gone, or access is denied): codes and moto's classes.
NOT_RETRIED = frozenset(
    {
        "ResourceNotFoundException",
        "UnknownFunctionException",
        "StateMachineDoesNotExist",
        "NotFound",
        "TopicNotFound",
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "AccessDenied",
        "AccessDeniedException",
    }
)

#: Delivers a payload to a target ARN; raises when the target refuses it.
Send = Callable[[str, Any], None]
#: Sends a dead-lettered event to a queue: (queue ARN, body, string attributes).
DeadLetter = Callable[[str, str, Mapping[str, str]], None]


@dataclass
class _Delivery:
    target: Mapping[str, Any]
    payload: Any
    source: str  # the rule's or the schedule's ARN
    first_at: float = field(default_factory=time.monotonic)
    attempts: int = 0


class RetryingDelivery:
    """Sends to targets, retrying on timers; what cannot be delivered goes to the dead-letter queue."""

    def __init__(
        self, send: Send, time_scale: Callable[[], float], dead_letter: DeadLetter | None = None
    ) -> None:
        self._send = send
        self._time_scale = time_scale
        self._dead_letter_to = dead_letter or _send_to_queue
        self._lock = threading.Lock()
        self._timers: dict[threading.Timer, _Delivery] = {}
        #: Deliveries that were waiting for a retry when the embedded AWS stopped: a restart keeps them.
        self._interrupted: list[_Delivery] = []
        self._stopped = False

    def deliver(self, target: Mapping[str, Any], payload: Any, source: str) -> None:
        """Deliver now; a failure is retried later, never raised to whoever put the event."""
        self._attempt(_Delivery(target, payload, source))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            timers, self._timers = dict(self._timers), {}
            self._interrupted += timers.values()
        for timer in timers:
            timer.cancel()

    def waiting(self) -> list[dict[str, Any]]:
        """The deliveries waiting for a retry (since :meth:`stop`, those it interrupted), as records
        :meth:`resume` takes: EventBridge keeps retrying through anything, so a restart keeps them."""
        with self._lock:
            deliveries = [*self._timers.values(), *self._interrupted]
        now = time.monotonic()
        return [
            {
                "target": dict(d.target),
                "payload": d.payload,
                "source": d.source,
                "attempts": d.attempts,
                "age": now - d.first_at,
            }
            for d in deliveries
        ]

    def resume(self, records: list[dict[str, Any]]) -> None:
        """Retry now the deliveries :meth:`waiting` listed (their attempts and age go on)."""
        for r in records:
            delivery = _Delivery(r["target"], r["payload"], r["source"], time.monotonic() - float(r["age"]))
            delivery.attempts = int(r["attempts"])
            self._schedule(delivery, 0.0)

    def pending(self) -> int:
        """Deliveries waiting for a retry."""
        with self._lock:
            return len(self._timers)

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        try:
            self._send(str(delivery.target["Arn"]), delivery.payload)
        except Exception as exc:  # any refusal is a failed delivery: retried, then dead-lettered
            self._failed(delivery, exc)

    def _failed(self, delivery: _Delivery, exc: Exception) -> None:
        policy = delivery.target.get("RetryPolicy") or {}
        retries = int(policy.get("MaximumRetryAttempts", DEFAULT_RETRIES))
        max_age = float(policy.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE_SECONDS))
        scale = self._time_scale()
        scale = scale if scale > 0 else 1.0
        wait = min(FIRST_DELAY_SECONDS * 2 ** (delivery.attempts - 1), MAX_DELAY_SECONDS)
        wait *= random.uniform(0.5, 1.0)
        age = (time.monotonic() - delivery.first_at) * scale
        if _error_code(exc) in NOT_RETRIED or type(exc).__name__ in NOT_RETRIED:
            self._dead_letter(delivery, exc, None)
        elif delivery.attempts > retries:
            self._dead_letter(delivery, exc, "MaximumRetryAttemptsExhausted")
        elif age + wait > max_age:
            self._dead_letter(delivery, exc, "MaximumEventAgeExceeded")
        else:
            self._schedule(delivery, wait / scale)

    def _schedule(self, delivery: _Delivery, delay: float) -> None:
        with self._lock:
            if self._stopped:  # the attempt failed while the embedded AWS stops: kept for a restart
                self._interrupted.append(delivery)
                return
            timer = threading.Timer(delay, self._retry, args=(delivery,))
            timer.daemon = True
            self._timers[timer] = delivery
        timer.start()

    def _retry(self, delivery: _Delivery) -> None:
        with self._lock:
            self._timers = {t: d for t, d in self._timers.items() if t is not threading.current_thread()}
        self._attempt(delivery)

    def _dead_letter(self, delivery: _Delivery, exc: Exception, condition: str | None) -> None:
        queue = (delivery.target.get("DeadLetterConfig") or {}).get("Arn")
        target_arn = str(delivery.target["Arn"])
        if not queue:
            what = f"event from {delivery.source} to {target_arn} dropped after {delivery.attempts} attempts"
            faults.record(f"{what} ({condition or 'not retried'}; the target has no dead-letter queue)", exc)
            return
        attributes = {
            "RULE_ARN": delivery.source,
            "TARGET_ARN": target_arn,
            "ERROR_CODE": _error_code(exc),
            "ERROR_MESSAGE": str(exc)[:1000] or type(exc).__name__,
            "RETRY_ATTEMPTS": str(delivery.attempts - 1),
        }
        if condition:
            attributes["EXHAUSTED_RETRY_CONDITION"] = condition
        body = delivery.payload if isinstance(delivery.payload, str) else json.dumps(delivery.payload)
        try:
            self._dead_letter_to(str(queue), body, attributes)
        except Exception as failure:  # AWS drops it too (and counts it in InvocationsFailedToBeSentToDlq)
            faults.record(
                f"event from {delivery.source} to {target_arn} lost: its dead-letter queue {queue}", failure
            )


def _error_code(exc: Exception) -> str:
    """The AWS error code of a failed call (moto's exceptions carry it as ``error_type``)."""
    code = getattr(exc, "error_type", None)
    return str(code) if isinstance(code, str) and code else type(exc).__name__


def _send_to_queue(queue_arn: str, body: str, attributes: Mapping[str, str]) -> None:
    from moto.sqs.models import sqs_backends

    _, _, _, region, account, name = queue_arn.split(":", 5)
    message_attributes = {
        key: {"DataType": "String", "StringValue": value} for key, value in attributes.items()
    }
    sqs_backends[account][region].send_message(
        queue_name=name, message_body=body, message_attributes=message_attributes
    )
