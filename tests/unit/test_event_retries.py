"""EventBridge target retries in the embedded AWS: backoff until the retry policy is spent, then the
dead-letter queue; errors EventBridge does not retry go there at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from mlcycle.local.events import retries
from mlcycle.local.events.retries import RetryingDelivery


class ThrottlingException(Exception):
    """A retriable refusal."""


class UnknownFunctionException(Exception):
    """The target does not exist: not retried."""


class Sender:
    """Refuses the first ``failures`` attempts with ``error``, then accepts; records attempt times."""

    def __init__(self, failures: int, error: type[Exception] = ThrottlingException) -> None:
        self.failures, self.error = failures, error
        self.attempts: list[float] = []
        self.delivered: list[Any] = []
        self.done = threading.Event()

    def __call__(self, arn: str, payload: Any) -> None:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.failures:
            raise self.error(f"attempt {len(self.attempts)} refused")
        self.delivered.append(payload)
        self.done.set()


class Queue:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str, dict[str, str]]] = []
        self.done = threading.Event()

    def __call__(self, arn: str, body: str, attributes: Mapping[str, str]) -> None:
        self.messages.append((arn, body, dict(attributes)))
        self.done.set()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retries, "FIRST_DELAY_SECONDS", 0.05)


TARGET = {"Arn": "arn:aws:lambda:us-east-1:123456789012:function:f", "DeadLetterConfig": {"Arn": "arn:q"}}


def test_a_retriable_failure_is_retried_with_growing_delays_until_delivered() -> None:
    send, queue = Sender(failures=3), Queue()
    delivery = RetryingDelivery(send, lambda: 1.0, queue)
    delivery.deliver(TARGET, {"n": 1}, source="arn:rule")
    assert send.done.wait(10)
    assert send.delivered == [{"n": 1}] and len(send.attempts) == 4
    gaps = [b - a for a, b in zip(send.attempts, send.attempts[1:], strict=False)]
    # jitter takes each delay down to half of 0.05, 0.1, 0.2 s: the lower bounds grow
    assert [gap >= 0.5 * 0.05 * 2**i for i, gap in enumerate(gaps)] == [True, True, True]
    assert queue.messages == []


def test_spent_retries_dead_letter_the_event_with_eventbridges_attributes() -> None:
    send, queue = Sender(failures=99), Queue()
    target = {**TARGET, "RetryPolicy": {"MaximumRetryAttempts": 2}}
    RetryingDelivery(send, lambda: 1.0, queue).deliver(target, {"n": 2}, source="arn:rule")
    assert queue.done.wait(10)
    ((arn, body, attributes),) = queue.messages
    assert arn == "arn:q" and body == '{"n": 2}' and len(send.attempts) == 3
    assert attributes["RETRY_ATTEMPTS"] == "2"
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttemptsExhausted"
    assert attributes["ERROR_CODE"] == "ThrottlingException"
    assert attributes["RULE_ARN"] == "arn:rule" and attributes["TARGET_ARN"] == TARGET["Arn"]


def test_the_maximum_event_age_ends_retries_on_the_embedded_clock() -> None:
    # GIVEN a clock 1000 times faster, and an event that may be at most 60 s old: the second delay of a few
    # virtual seconds is still allowed, but the retries stop well before 185 attempts
    send, queue = Sender(failures=999), Queue()
    target = {**TARGET, "RetryPolicy": {"MaximumEventAgeInSeconds": 60}}
    RetryingDelivery(send, lambda: 1000.0, queue).deliver(target, {}, source="arn:rule")
    assert queue.done.wait(10)
    ((_, _, attributes),) = queue.messages
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumEventAgeExceeded"
    assert 2 <= len(send.attempts) < 185


def test_a_target_that_does_not_exist_is_not_retried() -> None:
    send, queue = Sender(failures=99, error=UnknownFunctionException), Queue()
    RetryingDelivery(send, lambda: 1.0, queue).deliver(TARGET, {}, source="arn:rule")
    assert queue.done.wait(10)
    assert len(send.attempts) == 1
    ((_, _, attributes),) = queue.messages
    assert attributes["RETRY_ATTEMPTS"] == "0" and "EXHAUSTED_RETRY_CONDITION" not in attributes


def test_without_a_dead_letter_queue_the_event_is_dropped_and_said_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send = Sender(failures=99, error=UnknownFunctionException)
    RetryingDelivery(send, lambda: 1.0, Queue()).deliver({"Arn": TARGET["Arn"]}, {}, source="arn:rule")
    assert "dropped" in caplog.text and "no dead-letter queue" in caplog.text


def test_a_delivery_waiting_for_a_retry_is_kept_through_a_restart_and_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send, queue = Sender(failures=1), Queue()
    old = RetryingDelivery(send, lambda: 1.0, queue)
    monkeypatch.setattr(retries, "FIRST_DELAY_SECONDS", 30.0)  # the retry would come long after the stop
    old.deliver(TARGET, {"n": 2}, source="arn:rule")
    old.stop()
    (kept,) = old.waiting()
    assert (kept["payload"], kept["source"], kept["attempts"]) == ({"n": 2}, "arn:rule", 1)
    # WHEN the new instance resumes it THEN it is retried at once, as the second attempt
    new = RetryingDelivery(send, lambda: 1.0, queue)
    new.resume([kept])
    assert send.done.wait(10)
    assert send.delivered == [{"n": 2}] and len(send.attempts) == 2
