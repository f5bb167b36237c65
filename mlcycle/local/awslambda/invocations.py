"""Lambda functions of the embedded AWS: each function runs its bundled code in execution environments of
its own (child processes, :mod:`mlcycle.local.awslambda.environments`) instead of in Docker.

moto runs function code only in Docker. Every path that invokes a function (direct ``Invoke``, Step
Functions tasks, SNS subscriptions, S3 notifications, SQS/DynamoDB/Kinesis pollers, EventBridge targets,
Secrets Manager rotation) ends in ``LambdaFunction.invoke`` and then ``LambdaFunction._invoke_lambda``.
:func:`install` replaces both:

* ``_invoke_lambda`` runs the invocation in an environment of the function: its zip's code, its
  variables, its timeout. A handler's exception becomes the Lambda error payload (``errorType`` = the
  exception's class name), so Step Functions ``Retry``/``Catch`` match on it. Its output becomes the
  invocation's CloudWatch log, whose EMF lines become metrics.
* ``invoke`` decides whether the call is synchronous. moto runs *every* invocation inside the thread of
  the HTTP request that caused it (an S3 put, an SNS publish, a PutEvents): those are asynchronous for their
  caller in AWS, so they go to Lambda's queue (:mod:`mlcycle.local.awslambda.asynchronous`) and run on
  threads of their own, concurrently, with retries.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moto.awslambda.exceptions import LambdaClientError

from mlcycle.local import context
from mlcycle.local.awslambda.asynchronous import AsyncInvoker
from mlcycle.local.awslambda.environments import Environments, Outcome, Runtime, ThrottledError
from mlcycle.local.cloudwatch import emf
from mlcycle.local.context import LocalContext

if TYPE_CHECKING:
    from moto.awslambda.models import LambdaFunction

_LOG = logging.getLogger(__name__)

#: How long a synchronous invocation of a function without reserved concurrency waits for one of its
#: environments to be free (the embedded AWS caps them: environments.UNRESERVED_LIMIT) before it is throttled.
SYNC_WAIT_SECONDS = 300.0
#: CloudWatch Logs "LogResult" holds the last 4 KB of the log, as in AWS.
_LOG_RESULT_BYTES = 4096

Invocation = tuple[str, bool, str]  # (payload, errored, logs) as moto's _invoke_lambda returns them


@dataclass
class LambdaState:
    """moto's replaced methods, the asynchronous queue and every function's execution environments."""

    originals: dict[str, Any]
    worker: AsyncInvoker
    environments: Environments
    #: moto's ``LambdaBackend`` methods replaced to keep what it drops.
    backend_originals: dict[str, Any] = field(default_factory=dict)


@dataclass
class LambdaContext:
    """The context object AWS passes to a Python handler, for tests that call a handler directly (inside
    the embedded AWS, the environment's runtime builds its own: ``bootstrap.Context``)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float = field(repr=False)  # time.monotonic() value at which the function would time out
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


# --- one invocation -----------------------------------------------------------------------------------


def _invoke_in_environment(fn: LambdaFunction, event: Any = None) -> Invocation:
    """Replacement of ``LambdaFunction._invoke_lambda``: run it in an environment, waiting for a free one."""
    return _run(fn, {} if event is None else event, wait=SYNC_WAIT_SECONDS)


def _run(fn: LambdaFunction, event: Any, *, wait: float | None) -> Invocation:
    state = context.installed(LambdaState)
    outcome = state.environments.invoke(fn, event, wait=wait)
    logs = _log_text(fn, outcome)
    _save_logs(fn, outcome.log_stream, logs)
    emf.publish(fn.account_id, fn.region, logs)  # CloudWatch turns EMF log lines into metrics
    return outcome.payload, outcome.errored, logs


def _run_queued(fn: LambdaFunction, event: Any) -> tuple[str, bool]:
    """An asynchronous invocation: it waits in the queue as long as its function has no environment free."""
    payload, errored, _ = _run(fn, event, wait=None)
    return payload, errored


def _log_text(fn: LambdaFunction, outcome: Outcome) -> str:
    request_id = outcome.request_id
    return "\n".join(
        [
            f"START RequestId: {request_id} Version: {fn.version}",
            *outcome.lines,
            f"END RequestId: {request_id}",
            f"REPORT RequestId: {request_id}\tDuration: {outcome.elapsed_ms:.2f} ms"
            f"\tMemory Size: {fn.memory_size} MB",
        ]
    )


def _save_logs(fn: LambdaFunction, stream: str, logs: str) -> None:
    """Write the invocation's log to CloudWatch Logs (group ``/aws/lambda/{name}``), as Lambda does."""
    if not stream:
        return
    backend = fn.logs_backend
    backend.ensure_log_group(fn.logs_group_name)
    if stream not in backend.groups[fn.logs_group_name].streams:
        backend.create_log_stream(fn.logs_group_name, stream)
    events = [{"timestamp": int(time.time() * 1000), "message": line} for line in logs.splitlines()]
    backend.put_log_events(fn.logs_group_name, stream, events)


# --- synchronous or asynchronous -------------------------------------------------------------------------


class TooManyRequestsError(LambdaClientError):
    """A synchronous call past the function's reserved concurrency, answered 429 as Lambda does."""

    code = 429

    def __init__(self, message: str) -> None:
        super().__init__("TooManyRequestsException", message)


def _invoke(
    fn: LambdaFunction, body: Any, request_headers: Any, response_headers: dict[str, Any]
) -> str | bytes:
    """Replacement of ``LambdaFunction.invoke``: run now or queue, by invocation type."""
    event = json.loads(body) if body else {}
    invocation_type = _invocation_type(request_headers)
    if invocation_type == "DryRun":
        return b""
    state = context.installed_or_none(LambdaState)
    if invocation_type == "Event" and state is not None:
        state.worker.submit(fn, event)
        return b""
    try:
        payload, errored, logs = _run(
            fn, event, wait=0 if fn.reserved_concurrency is not None else SYNC_WAIT_SECONDS
        )
    except ThrottledError as exc:
        raise TooManyRequestsError(str(exc)) from exc
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    tail = logs.encode("utf-8")[-_LOG_RESULT_BYTES:]
    response_headers["x-amz-log-result"] = base64.b64encode(tail).decode("ascii")
    return payload.encode("utf-8")


def _invocation_type(request_headers: Any) -> str:
    """``Event``, ``RequestResponse`` or ``DryRun``.

    An HTTP ``Invoke`` carries its headers. moto's own services (S3 and SNS notifications, EventBridge,
    the SQS/DynamoDB/Kinesis pollers, log subscriptions, Secrets Manager rotation) pass no headers at all,
    from inside the request that triggered them: they are asynchronous for their caller, so they are
    queued. Consequence: an SQS batch counts as processed (deleted) before the handler runs.
    """
    if not request_headers:
        return "Event"
    headers: Mapping[str, Any] = request_headers
    for key in ("X-Amz-Invocation-Type", "x-amz-invocation-type"):
        value = headers.get(key)
        if value:
            return str(value)
    return "RequestResponse"


# --- dead-letter queues ------------------------------------------------------------------------------------


def _create_function(backend: Any, spec: dict[str, Any]) -> LambdaFunction:
    """``LambdaBackend.create_function`` that keeps the function's ``DeadLetterConfig`` (moto drops it)."""
    state = context.installed(LambdaState)
    fn: LambdaFunction = state.backend_originals["create_function"](backend, spec)
    _remember_dead_letter(state, fn, spec)
    return fn


def _update_function_configuration(
    backend: Any, function_name: str, qualifier: str, body: dict[str, Any]
) -> dict[str, Any] | None:
    state = context.installed(LambdaState)
    result = state.backend_originals["update_function_configuration"](backend, function_name, qualifier, body)
    _remember_dead_letter(state, backend.get_function(function_name, qualifier), body)
    return result  # type: ignore[no-any-return]


def _remember_dead_letter(state: LambdaState, fn: LambdaFunction, spec: Mapping[str, Any]) -> None:
    if "DeadLetterConfig" not in spec:
        return
    target = (spec.get("DeadLetterConfig") or {}).get("TargetArn")
    if target:
        state.worker.dead_letter_targets[fn.function_arn] = str(target)
    else:
        state.worker.dead_letter_targets.pop(fn.function_arn, None)


# --- install ---------------------------------------------------------------------------------------------


def wait_for_async(timeout: float = 30.0, function_name: str | None = None) -> bool:
    """Wait until no asynchronous invocation (of one function, if named) is queued, running or waiting to
    retry; False on timeout."""
    state = context.installed_or_none(LambdaState)
    return state.worker.wait_idle(timeout, function_name) if state is not None else True


def install(ctx: LocalContext) -> None:
    """Run Lambda functions in execution environments of this machine (see the module docstring)."""
    from moto.awslambda.models import LambdaBackend, LambdaFunction

    uninstall_from(ctx)
    if LambdaFunction._invoke_lambda is _invoke_in_environment:
        raise RuntimeError("another embedded AWS is still installed in this process: stop it first")
    originals = {"invoke": LambdaFunction.invoke, "_invoke_lambda": LambdaFunction._invoke_lambda}
    setattr(LambdaFunction, "invoke", _invoke)  # noqa: B010 - replacing a method
    setattr(LambdaFunction, "_invoke_lambda", _invoke_in_environment)  # noqa: B010
    variables = {
        "AWS_ENDPOINT_URL": ctx.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
    runtime = Runtime(python=ctx.python, work_dir=ctx.work_dir, aws_variables=variables)
    worker = AsyncInvoker(_run_queued, lambda: ctx.time_scale)
    backend_originals = {
        "create_function": LambdaBackend.create_function,
        "update_function_configuration": LambdaBackend.update_function_configuration,
    }
    setattr(LambdaBackend, "create_function", _create_function)  # noqa: B010
    setattr(LambdaBackend, "update_function_configuration", _update_function_configuration)  # noqa: B010
    ctx.services[LambdaState] = LambdaState(originals, worker, Environments(runtime), backend_originals)


def suspend(ctx: LocalContext) -> dict[str, Any]:
    """What Lambda keeps through a restart of the embedded AWS: its asynchronous queue (AWS keeps it
    durably; the invocations interrupted run again after the restart) and the dead-letter queues moto
    drops. Takes no more asynchronous invocations from here on."""
    state = ctx.services.get(LambdaState)
    if state is None:
        return {}
    state.worker.stop()
    return {"queue": state.worker.pending(), "dead_letter_targets": dict(state.worker.dead_letter_targets)}


def resume(ctx: LocalContext, kept: Mapping[str, Any]) -> int:
    """Queue again what :func:`suspend` kept; return how many invocations that is."""
    from moto.awslambda.utils import get_backend

    state = context.installed(LambdaState)
    state.worker.dead_letter_targets.update(kept.get("dead_letter_targets", {}))
    queue = kept.get("queue", [])
    for record in queue:
        _, _, _, region, account, _ = str(record["function_arn"]).split(":", 5)
        fn = get_backend(account, region).get_function(record["function_arn"])
        state.worker.submit(fn, record["event"], attempt=int(record["attempt"]), age=float(record["age"]))
    return len(queue)


def uninstall() -> None:
    """Restore moto's Lambda, drop the retries still waiting and stop every execution environment."""
    ctx = context.running()
    if ctx is not None:
        uninstall_from(ctx)


def uninstall_from(ctx: LocalContext) -> None:
    from moto.awslambda.models import LambdaBackend, LambdaFunction

    state = ctx.services.pop(LambdaState, None)
    if state is None:
        return
    for name, original in state.originals.items():
        setattr(LambdaFunction, name, original)
    for name, original in state.backend_originals.items():
        setattr(LambdaBackend, name, original)
    state.worker.stop()
    state.environments.stop()
