"""Asynchronous invocations in the embedded AWS: Lambda's internal queue, its retries and where failures go.

As in AWS:

* queued invocations run concurrently, each in an execution environment of its function (up to the
  function's concurrency; past it they wait in the queue, as throttled asynchronous events do);
* a failed invocation is retried twice unless the function's event invoke config says otherwise
  (``MaximumRetryAttempts``), after about 1 and then 2 minutes (:data:`RETRY_DELAYS`, divided by the
  embedded AWS's ``time_scale``), and not once it is older than ``MaximumEventAgeInSeconds``;
* when the retries are spent, the invocation record goes to the ``OnFailure`` destination and the event to
  the function's dead-letter queue, if either is configured; a success goes to ``OnSuccess``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlcycle.local import faults

if TYPE_CHECKING:
    from moto.awslambda.models import LambdaFunction


_LOG = logging.getLogger(__name__)

#: Lambda's delays before the first and the second retry of an asynchronous invocation, in seconds.
RETRY_DELAYS = (60.0, 120.0)
#: Lambda's default number of retries and maximum event age (6 hours).
DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE_SECONDS = 6 * 3600

#: Runs one invocation in an environment of the function: (payload, errored).
Runner = Callable[["LambdaFunction", Any], tuple[str, bool]]


@dataclass
class _Job:
    function: LambdaFunction
    event: Any
    queued_at: float = field(default_factory=time.monotonic)
    attempt: int = 1


class AsyncInvoker:
    """Lambda's queue of asynchronous invocations: each runs on a thread of its own, as soon as its function
    has an environment free; retries wait on timers. ``wait_idle`` counts a job until its last attempt."""

    def __init__(self, run: Runner, time_scale: Callable[[], float]) -> None:
        self._run = run
        self._time_scale = time_scale
        self._pending = 0
        self._pending_by_function: dict[str, int] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._timers: set[threading.Timer] = set()
        #: Every invocation not yet concluded (queued, running or waiting to retry): what a restart keeps.
        self._jobs: dict[int, _Job] = {}
        #: Dead-letter queues by function ARN (moto does not keep a function's ``DeadLetterConfig``).
        self.dead_letter_targets: dict[str, str] = {}

    def submit(self, fn: LambdaFunction, event: Any, *, attempt: int = 1, age: float = 0.0) -> None:
        """Queue an invocation; ``attempt`` and ``age`` (seconds) carry on one that a restart kept."""
        job = _Job(fn, event, queued_at=time.monotonic() - age, attempt=attempt)
        with self._cond:
            if self._stopped:
                raise RuntimeError("the embedded AWS is stopping: no more asynchronous invocations")
            self._pending += 1
            name = fn.function_name
            self._pending_by_function[name] = self._pending_by_function.get(name, 0) + 1
            self._jobs[id(job)] = job
        self._start(job)

    def pending(self) -> list[dict[str, Any]]:
        """The invocations not yet concluded, as records a restart can queue again (:meth:`submit`): Lambda
        keeps its asynchronous queue durably, so a restart of the embedded AWS must not lose them."""
        with self._cond:
            jobs = list(self._jobs.values())
        now = time.monotonic()
        return [
            {
                "function_arn": job.function.function_arn,
                "event": job.event,
                "attempt": job.attempt,
                "age": now - job.queued_at,
            }
            for job in jobs
        ]

    def _start(self, job: _Job) -> None:
        name = f"lambda-async-{job.function.function_name}"
        threading.Thread(target=self._attempt, args=(job,), name=name, daemon=True).start()

    def wait_idle(self, timeout: float, function_name: str | None = None) -> bool:
        """Wait until every queued invocation (and the ones they queued) has run, retries included, or only
        those of one function; False on timeout."""
        with self._cond:
            if function_name is None:
                return self._cond.wait_for(lambda: self._pending == 0, timeout)
            return self._cond.wait_for(lambda: not self._pending_by_function.get(function_name), timeout)

    def stop(self) -> None:
        """Drop the retries still waiting (:meth:`pending` still lists them); running invocations finish on
        their own threads."""
        with self._cond:
            self._stopped = True
            timers, self._timers = set(self._timers), set()
        for timer in timers:
            timer.cancel()

    def _done(self, job: _Job, *, concluded: bool = True) -> None:
        with self._cond:
            if concluded:  # one the embedded AWS's stop interrupted stays for :meth:`pending`
                self._jobs.pop(id(job), None)
            self._pending -= 1
            self._pending_by_function[job.function.function_name] -= 1
            self._cond.notify_all()

    def _attempt(self, job: _Job) -> None:
        fn = job.function
        config = _event_invoke_config(fn)
        try:
            payload, errored = self._run(fn, job.event)
        except Exception as exc:  # the emulator itself failed: the invocation counts as failed, not lost
            faults.record(f"asynchronous invocation of {fn.function_name} could not run", exc)
            payload, errored = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}), True
        if errored and self._retry(job, config):
            _LOG.warning(
                "asynchronous invocation of %s failed (attempt %d), retrying: %s",
                fn.function_name,
                job.attempt - 1,
                payload[:500],
            )
            return
        with self._cond:
            stopping = self._stopped
        if stopping:  # the embedded AWS is stopping (it stopped the environment): the job is not concluded
            self._done(job, concluded=False)
            return
        try:
            self._conclude(job, config, payload, success=not errored)
        finally:
            self._done(job)

    def _conclude(self, job: _Job, config: Mapping[str, Any], payload: str, *, success: bool) -> None:
        """The invocation's last word: its destination, and the dead-letter queue for a failure. A failure
        with neither is dropped, as in AWS; that, and a record AWS could not deliver (its
        ``DestinationDeliveryFailures`` metric), is kept where ``mlcycle local status`` shows it."""
        fn = job.function
        has_failure_target = bool(
            config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            or self.dead_letter_targets.get(fn.function_arn)
        )
        if not success and not has_failure_target:
            what = f"asynchronous invocation of {fn.function_name} dropped after {job.attempt} attempts"
            faults.record(f"{what} (no OnFailure destination, no dead-letter queue)", payload)
        try:
            _send_to_destination(fn, config, job.event, payload, job.attempt, success=success)
            if not success:
                self._dead_letter(fn, job.event, payload)
        except Exception as exc:
            faults.record(
                f"the outcome of an asynchronous invocation of {fn.function_name} not delivered", exc
            )

    def _retry(self, job: _Job, config: Mapping[str, Any]) -> bool:
        """Schedule the next attempt, if the retries and the event's age allow one."""
        retries = int(config.get("MaximumRetryAttempts", DEFAULT_RETRIES))
        max_age = float(config.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE_SECONDS))
        if job.attempt > retries:
            return False
        scale = self._time_scale()
        scale = scale if scale > 0 else 1.0  # a paused clock (0) still lets retries happen
        wait = RETRY_DELAYS[min(job.attempt - 1, len(RETRY_DELAYS) - 1)]
        if (time.monotonic() - job.queued_at) * scale + wait > max_age:
            return False
        delay = wait / scale
        job.attempt += 1
        with self._cond:
            if self._stopped:
                return False
            timer = threading.Timer(delay, self._fire, args=(job,))
            timer.daemon = True
            self._timers.add(timer)
        timer.start()
        return True

    def _fire(self, job: _Job) -> None:
        with self._cond:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
        self._attempt(job)

    def _dead_letter(self, fn: LambdaFunction, event: Any, payload: str) -> None:
        target = self.dead_letter_targets.get(fn.function_arn)
        if not target:
            return
        error = json.loads(payload) if payload else {}
        attributes = {
            "RequestID": {"DataType": "String", "StringValue": str(uuid.uuid4())},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": str(error.get("errorMessage", ""))[:1000]},
        }
        _send(target, json.dumps(event), attributes)


def _event_invoke_config(fn: LambdaFunction) -> dict[str, Any]:
    return dict(fn.event_invoke_config[0].config) if fn.event_invoke_config else {}


def _send_to_destination(
    fn: LambdaFunction, config: Mapping[str, Any], event: Any, payload: str, attempts: int, *, success: bool
) -> None:
    """Deliver the invocation record to the OnSuccess/OnFailure destination, if one is configured."""
    key = "OnSuccess" if success else "OnFailure"
    destination = config.get("DestinationConfig", {}).get(key, {}).get("Destination")
    if not destination:
        return
    record = _destination_record(fn, event, payload, attempts, success=success)
    if destination.split(":")[2] == "events":
        _put_result_event(fn, destination, record, success=success)
    else:
        _send(destination, json.dumps(record))


def _destination_record(
    fn: LambdaFunction, event: Any, payload: str, attempts: int, *, success: bool
) -> dict[str, Any]:
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if not success:
        response["functionError"] = "Unhandled"
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{fn.function_arn}:$LATEST",
            "condition": "Success" if success else "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": response,
        "responsePayload": json.loads(payload) if payload else None,
    }


def _send(destination: str, body: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Send a record to an SQS queue, an SNS topic or (asynchronously) a Lambda function."""
    _, _, service, region, account, resource = destination.split(":", 5)
    if service == "sqs":
        from moto.sqs.models import sqs_backends

        sqs_backends[account][region].send_message(
            queue_name=resource, message_body=body, message_attributes=dict(attributes or {})
        )
    elif service == "sns":
        from moto.sns.models import sns_backends

        sns_backends[account][region].publish(message=body, arn=destination)
    elif service == "lambda":
        from moto.awslambda.utils import get_backend

        target = get_backend(account, region).get_function(destination)
        target.invoke(body, {"X-Amz-Invocation-Type": "Event"}, {})
    else:
        raise ValueError(f"the embedded AWS cannot send to {destination}")


def _put_result_event(fn: LambdaFunction, bus: str, record: dict[str, Any], *, success: bool) -> None:
    from moto.events.models import events_backends

    _, _, _, region, account, _ = bus.split(":", 5)
    outcome = "Success" if success else "Failure"
    entry = {
        "Source": "lambda",
        "DetailType": f"Lambda Function Invocation Result - {outcome}",
        "Detail": json.dumps(record),
        "EventBusName": bus,
        "Resources": [fn.function_arn],
    }
    events_backends[account][region].put_events([entry])
