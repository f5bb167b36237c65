"""Lambda functions of the embedded AWS: our handlers run in this process instead of in Docker.

moto runs function code only in Docker. Every path that invokes a function (direct ``Invoke``, Step
Functions tasks, SNS subscriptions, S3 notifications, SQS/DynamoDB/Kinesis pollers, EventBridge targets,
Secrets Manager rotation) ends in ``LambdaFunction.invoke`` and then ``LambdaFunction._invoke_lambda``.
:func:`install` replaces both:

* ``_invoke_lambda`` imports the module named by the function's ``Handler`` and calls the handler with
  the function's environment and a Lambda context object. An exception becomes the Lambda error payload
  (``errorType`` = the exception's class name), so Step Functions ``Retry``/``Catch`` match on it.
* ``invoke`` decides whether the call is synchronous. moto runs *every* invocation inside the thread of
  the HTTP request that caused it (an S3 put, an SNS publish, a PutEvents). Handlers share the process
  environment, so invocations are serialized by a lock; a handler that writes to S3 while holding it
  would wait forever for the notified function. Asynchronous invocations therefore go to one background
  worker thread that runs them in arrival order.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mlcycle import runtime
from mlcycle.config import BUNDLED_CONFIG_FILE, Settings, settings_from_json
from mlcycle.local import context
from mlcycle.local.cloudwatch import emf
from mlcycle.local.context import LocalContext

if TYPE_CHECKING:
    from moto.awslambda.models import LambdaFunction

_LOG = logging.getLogger(__name__)

#: How long a synchronous invocation waits for the running one. Only a handler that synchronously invokes
#: another function can make it wait this long (the callee needs the lock its caller holds); it then
#: fails with a clear error instead of hanging the embedded AWS.
SYNC_WAIT_SECONDS = 300.0
#: CloudWatch Logs "LogResult" holds the last 4 KB of the log, as in AWS.
_LOG_RESULT_BYTES = 4096

Handler = Callable[[Any, "LambdaContext"], Any]
Invocation = tuple[str, bool, str]  # (payload, errored, logs) as moto's _invoke_lambda returns them


@dataclass
class LambdaState:
    """moto's replaced methods, the asynchronous worker, the lock that runs one handler at a time, and
    the settings bundled with each function's code."""

    originals: dict[str, Any]
    worker: AsyncInvoker
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Parsed bundled settings by code hash: a function's code changes only through UpdateFunctionCode.
    settings_by_code: dict[str, Settings | None] = field(default_factory=dict)


class HandlerImportError(Exception):
    """The function's Handler does not name a callable importable in this process."""


@dataclass
class LambdaContext:
    """The context object AWS passes to a Python handler (the attributes Powertools reads)."""

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


# --- the in-process invocation -------------------------------------------------------------------------


def _invoke_in_process(fn: LambdaFunction, event: Any = None) -> Invocation:
    """Replacement of ``LambdaFunction._invoke_lambda``: run the handler here, one invocation at a time."""
    lock = context.installed(LambdaState).lock
    if not lock.acquire(timeout=SYNC_WAIT_SECONDS):
        message = (
            f"{fn.function_name} waited {SYNC_WAIT_SECONDS:.0f}s for another invocation: the embedded AWS "
            "runs one handler at a time, so a handler must not invoke a function synchronously"
        )
        _LOG.error(message)
        return _error_payload("Lambda.TooManyRequestsException", message, []), True, ""
    try:
        return _run(fn, {} if event is None else event)
    finally:
        lock.release()


def _run(fn: LambdaFunction, event: Any) -> Invocation:
    request_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    stream = f"{now:%Y/%m/%d}/[{fn.version}]{request_id.replace('-', '')}"
    context = LambdaContext(
        function_name=fn.function_name,
        function_version=str(fn.version),
        invoked_function_arn=fn.function_arn,
        memory_limit_in_mb=int(fn.memory_size),
        aws_request_id=request_id,
        log_group_name=fn.logs_group_name,
        log_stream_name=stream,
        deadline=time.monotonic() + float(fn.timeout),
    )
    started = time.monotonic()
    with _environment(_lambda_environment(fn, stream)), _LogCapture() as capture:
        payload, errored = _call_handler(fn, event, context)
    elapsed_ms = (time.monotonic() - started) * 1000
    if elapsed_ms > float(fn.timeout) * 1000:
        # Not enforced (a thread cannot be killed), but it would have failed in AWS: say so.
        _LOG.warning("%s ran %.0f ms, beyond its %ss timeout", fn.function_name, elapsed_ms, fn.timeout)
    logs = _log_text(fn, request_id, capture.lines, elapsed_ms)
    _save_logs(fn, stream, logs)
    emf.publish(fn.account_id, fn.region, logs)  # CloudWatch turns EMF log lines into metrics
    return payload, errored, logs


def _call_handler(fn: LambdaFunction, event: Any, context: LambdaContext) -> tuple[str, bool]:
    try:
        handler = load_handler(str(fn.handler))
    except HandlerImportError as exc:
        _LOG.error("%s cannot run: %s", fn.function_name, exc)
        return _error_payload("Runtime.ImportModuleError", str(exc), []), True
    try:
        with runtime.supplied_settings(bundled_settings(fn)):
            result = handler(event, context)
    except Exception as exc:  # every handler failure becomes a FunctionError, as in AWS
        _LOG.info("%s raised %s: %s", fn.function_name, type(exc).__name__, exc)
        return _exception_payload(exc), True
    try:
        return json.dumps(result), False
    except (TypeError, ValueError) as exc:
        return _error_payload("Runtime.MarshalError", f"Unable to marshal response: {exc}", []), True


def _settings_in_code(code: bytes) -> Settings | None:
    try:
        with zipfile.ZipFile(io.BytesIO(code)) as archive:
            text = archive.read(BUNDLED_CONFIG_FILE).decode("utf-8")
    except (KeyError, zipfile.BadZipFile):
        return None
    return settings_from_json(text)


def bundled_settings(fn: LambdaFunction) -> Settings | None:
    """The settings the CDK app bundled with the function's code (``mlcycle_config.json`` in its zip),
    which the handler's ``mlcycle.runtime.settings()`` reads as it would in AWS; None for other code."""
    code: bytes = getattr(fn, "code_bytes", b"")
    if not code:
        return None
    parsed = context.installed(LambdaState).settings_by_code
    sha = str(fn.code_sha_256)
    if sha not in parsed:
        parsed[sha] = _settings_in_code(code)
    return parsed[sha]


def load_handler(handler: str) -> Handler:
    """The callable named by a Lambda Handler string ``package.module.function``."""
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise HandlerImportError(f"Handler {handler!r} is not of the form 'module.function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerImportError(
            f"Unable to import module {module_name!r} for handler {handler!r}: {exc}. The embedded AWS runs "
            "handlers in its own process, so the module must be importable there; inline code (such as "
            "CDK's 'index.handler' custom resources) cannot run locally."
        ) from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise HandlerImportError(f"Handler {handler!r}: module {module_name!r} has no callable {attribute!r}")
    return function  # type: ignore[no-any-return]


def _exception_payload(exc: Exception) -> str:
    stack = [line.rstrip("\n") for line in traceback.format_tb(exc.__traceback__)]
    return _error_payload(type(exc).__name__, str(exc), stack)


def _error_payload(error_type: str, message: str, stack: list[str]) -> str:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": stack})


# --- environment and logs --------------------------------------------------------------------------------


def _lambda_environment(fn: LambdaFunction, log_stream: str) -> dict[str, str]:
    """The function's variables plus the ones Lambda reserves (which win, as in AWS).

    Credentials and ``AWS_ENDPOINT_URL`` are left as the process has them: they point at the embedded AWS.
    """
    env = {str(key): str(value) for key, value in (fn.environment_vars or {}).items()}
    env.update(
        {
            "_HANDLER": str(fn.handler),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.run_time}",
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_REGION": fn.region,
            "AWS_DEFAULT_REGION": fn.region,
        }
    )
    return env


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` and restore exactly what was there before."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, previous in saved.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous


class _ThreadRoutedStdout(io.TextIOBase):
    """``sys.stdout`` while the embedded AWS runs: what a handler's thread prints (Powertools' JSON logs
    included) goes to that invocation's CloudWatch log, as in Lambda; every other thread's output passes
    through to the real stdout."""

    def __init__(self, target: Any) -> None:
        super().__init__()
        self.target = target
        self.active = threading.local()

    def write(self, text: str) -> int:
        capture: _LogCapture | None = getattr(self.active, "capture", None)
        if capture is None:
            return int(self.target.write(text))
        capture.add_text(text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return bool(self.target.isatty())


class _LogCapture(logging.Handler):
    """Records logged, and text printed, by the invoking thread while the handler runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._thread = threading.get_ident()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("[%(levelname)s] %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # The server's other threads log at the same time; keep only the handler's own records.
        if record.thread == self._thread:
            self.lines.append(self.format(record))

    def add_text(self, text: str) -> None:
        self.lines.extend(line for line in text.splitlines() if line.strip())

    def __enter__(self) -> _LogCapture:
        logging.getLogger().addHandler(self)
        if isinstance(sys.stdout, _ThreadRoutedStdout):
            sys.stdout.active.capture = self
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        logging.getLogger().removeHandler(self)
        if isinstance(sys.stdout, _ThreadRoutedStdout):
            sys.stdout.active.capture = None


def _log_text(fn: LambdaFunction, request_id: str, lines: list[str], elapsed_ms: float) -> str:
    return "\n".join(
        [
            f"START RequestId: {request_id} Version: {fn.version}",
            *lines,
            f"END RequestId: {request_id}",
            f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms"
            f"\tMemory Size: {fn.memory_size} MB",
        ]
    )


def _save_logs(fn: LambdaFunction, stream: str, logs: str) -> None:
    """Write the invocation's log to CloudWatch Logs (group ``/aws/lambda/{name}``), as Lambda does."""
    try:
        fn.logs_backend.ensure_log_group(fn.logs_group_name)
        fn.logs_backend.create_log_stream(fn.logs_group_name, stream)
        timestamp = int(time.time() * 1000)
        events = [{"timestamp": timestamp, "message": line} for line in logs.splitlines()]
        fn.logs_backend.put_log_events(fn.logs_group_name, stream, events)
    except Exception:  # logs are a courtesy; never fail an invocation over them
        _LOG.debug("could not store the log of %s", fn.function_name, exc_info=True)


# --- synchronous or asynchronous -------------------------------------------------------------------------


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
    payload, errored, logs = fn._invoke_lambda(event)  # type: ignore[arg-type]  # moto passes the parsed body
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


@dataclass(frozen=True)
class _AsyncJob:
    function: LambdaFunction
    event: Any


class AsyncInvoker:
    """One background thread running asynchronous invocations in arrival order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[_AsyncJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="mlcycle-lambda-async", daemon=True)
        self._thread.start()

    def submit(self, fn: LambdaFunction, event: Any) -> None:
        self._queue.put(_AsyncJob(fn, event))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued invocation (and the ones they queued) has run; False on timeout."""
        with self._queue.all_tasks_done:
            return self._queue.all_tasks_done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                _run_async(job)
            except Exception:  # the worker must survive whatever one invocation does
                _LOG.exception("asynchronous invocation of %s failed", job.function.function_name)
            finally:
                self._queue.task_done()
        self._queue.task_done()


def _run_async(job: _AsyncJob) -> None:
    """Run one asynchronous invocation with the function's retries, then its destinations.

    AWS retries a failed asynchronous invocation twice (after about 1 and 2 minutes) unless the event
    invoke config says otherwise. Locally only an explicit ``MaximumRetryAttempts`` is honoured, at once,
    so a failing handler runs once and its failure is visible immediately.
    """
    fn = job.function
    config = _event_invoke_config(fn)
    attempts = 1 + int(config.get("MaximumRetryAttempts", 0))
    for attempt in range(1, attempts + 1):
        payload, errored, _ = fn._invoke_lambda(job.event)
        if not errored:
            _send_to_destination(fn, config, job.event, payload, attempt, success=True)
            return
    _LOG.warning("asynchronous invocation of %s failed: %s", fn.function_name, payload)
    _send_to_destination(fn, config, job.event, payload, attempts, success=False)


def _event_invoke_config(fn: LambdaFunction) -> dict[str, Any]:
    return dict(fn.event_invoke_config[0].config) if fn.event_invoke_config else {}


def _send_to_destination(
    fn: LambdaFunction, config: Mapping[str, Any], event: Any, payload: str, attempts: int, *, success: bool
) -> None:
    """Deliver the invocation record to the OnSuccess/OnFailure destination, if one is configured.

    moto does not store a function's DeadLetterConfig, so only event invoke config destinations exist.
    """
    key = "OnSuccess" if success else "OnFailure"
    destination = config.get("DestinationConfig", {}).get(key, {}).get("Destination")
    if not destination:
        return
    record = _destination_record(fn, event, payload, attempts, success=success)
    try:
        _deliver_record(fn, destination, record, success=success)
    except Exception:  # a broken destination must not break the worker
        _LOG.exception("could not deliver the %s record of %s to %s", key, fn.function_name, destination)


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
        "responsePayload": json.loads(payload),
    }


def _deliver_record(fn: LambdaFunction, destination: str, record: dict[str, Any], *, success: bool) -> None:
    _, _, service, region, account, resource = destination.split(":", 5)
    body = json.dumps(record)
    if service == "sqs":
        from moto.sqs.models import sqs_backends

        sqs_backends[account][region].send_message(queue_name=resource, message_body=body)
    elif service == "sns":
        from moto.sns.models import sns_backends

        sns_backends[account][region].publish(message=body, arn=destination)
    elif service == "lambda":
        from moto.awslambda.utils import get_backend

        target = get_backend(account, region).get_function(destination)
        target.invoke(body, {"X-Amz-Invocation-Type": "Event"}, {})
    elif service == "events":
        from moto.events.models import events_backends

        outcome = "Success" if success else "Failure"
        entry = {
            "Source": "lambda",
            "DetailType": f"Lambda Function Invocation Result - {outcome}",
            "Detail": body,
            "EventBusName": destination,
            "Resources": [fn.function_arn],
        }
        events_backends[account][region].put_events([entry])
    else:
        _LOG.warning("destination %s of %s is not supported locally", destination, fn.function_name)


# --- install ---------------------------------------------------------------------------------------------


def wait_for_async(timeout: float = 30.0) -> bool:
    """Wait until no asynchronous invocation is queued or running (tests, demos); False on timeout."""
    state = context.installed_or_none(LambdaState)
    return state.worker.wait_idle(timeout) if state is not None else True


def install(ctx: LocalContext) -> None:
    """Run Lambda handlers in this process (see the module docstring)."""
    from moto.awslambda.models import LambdaFunction

    uninstall_from(ctx)
    if LambdaFunction._invoke_lambda is _invoke_in_process:
        raise RuntimeError("another embedded AWS is still installed in this process: stop it first")
    originals = {"invoke": LambdaFunction.invoke, "_invoke_lambda": LambdaFunction._invoke_lambda}
    setattr(LambdaFunction, "invoke", _invoke)  # noqa: B010 - replacing a method
    setattr(LambdaFunction, "_invoke_lambda", _invoke_in_process)  # noqa: B010
    ctx.services[LambdaState] = LambdaState(originals=originals, worker=AsyncInvoker())
    if not isinstance(sys.stdout, _ThreadRoutedStdout):
        sys.stdout = _ThreadRoutedStdout(sys.stdout)


def uninstall() -> None:
    """Restore moto's Lambda and stop the asynchronous worker (queued invocations are dropped)."""
    ctx = context.running()
    if ctx is not None:
        uninstall_from(ctx)


def uninstall_from(ctx: LocalContext) -> None:
    from moto.awslambda.models import LambdaFunction

    state = ctx.services.pop(LambdaState, None)
    if state is None:
        return
    for name, original in state.originals.items():
        setattr(LambdaFunction, name, original)
    if isinstance(sys.stdout, _ThreadRoutedStdout):
        sys.stdout = sys.stdout.target
    state.worker.stop()
