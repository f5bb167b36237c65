"""Lambda execution environments of the embedded AWS: one child process each, running the function's bundle.

As in Lambda:

* an environment runs the code the function was created with (its zip, unpacked once per code hash), with
  the function's environment variables and nothing of this process's, so a module missing from the bundle
  or a variable missing from the template fails here as in AWS;
* it serves one invocation at a time and stays warm for the next (module state survives between them);
* a function runs in as many environments at once as it has concurrent invocations, up to its reserved
  concurrency: past it, a synchronous call is throttled (``TooManyRequestsException``) and an asynchronous
  one waits in the queue;
* an invocation that outlives the function's timeout is stopped (its environment is killed) and fails
  with ``Sandbox.Timedout``; an environment that dies fails its invocation with ``Runtime.ExitError``.

Differences from AWS (README, "what is checked where"): a function without reserved concurrency gets at most
:data:`UNRESERVED_LIMIT` environments, and a call past that waits for one instead of scaling out; the
runtime and the layers are this venv's packages.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mlcycle.local.awslambda.bootstrap import RESULT_MARK

if TYPE_CHECKING:
    from moto.awslambda.models import LambdaFunction

#: Environments a function without reserved concurrency may have at once on this machine.
UNRESERVED_LIMIT = 4
#: An idle environment older than this is stopped when its function is next used.
IDLE_SECONDS = 600.0
#: How long an environment's init phase (imports) may take. Lambda allows 10 s; this machine may be slower.
INIT_SECONDS = 120.0
#: The bootstrap is run by path, so the child imports nothing of the checkout before the bundle.
_BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
#: What the child may inherit from this process besides the function's own variables.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT")


class ThrottledError(Exception):
    """The function is at its reserved concurrency (``TooManyRequestsException`` in AWS)."""


@dataclass(frozen=True)
class Outcome:
    """One invocation's result as moto's ``_invoke_lambda`` returns it, plus its log lines."""

    payload: str
    errored: bool
    lines: list[str]
    request_id: str
    log_stream: str
    elapsed_ms: float


@dataclass(frozen=True)
class Runtime:
    """What the environments of the embedded AWS need from it."""

    python: str
    work_dir: Path
    #: Variables pointing every AWS client of the child at the embedded AWS (endpoint, credentials).
    aws_variables: dict[str, str]


def error_payload(error_type: str, message: str) -> str:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": []})


class Environment:
    """One execution environment: a child process serving one invocation at a time."""

    def __init__(self, fn: LambdaFunction, code_dir: Path, runtime: Runtime) -> None:
        started = datetime.now(UTC)
        self.log_stream = f"{started:%Y/%m/%d}/[{fn.version}]{uuid.uuid4().hex}"
        self.last_used = time.monotonic()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._process = subprocess.Popen(
            [runtime.python, "-I", "-u", str(_BOOTSTRAP), str(code_dir), str(fn.handler)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_variables(fn, self.log_stream, runtime),
            cwd=code_dir,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, name=f"lambda-{fn.function_name}", daemon=True)
        self._reader.start()
        #: The init phase's output, for the first invocation's log (None once the init is over).
        self._init_lines: list[str] | None = None
        self._initialised = False

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def _read(self) -> None:
        stdout: IO[str] | None = self._process.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def invoke(self, fn: LambdaFunction, event: Any) -> Outcome:
        request_id = str(uuid.uuid4())
        timeout = float(fn.timeout)
        request = {
            "event": event,
            "function_name": fn.function_name,
            "function_version": str(fn.version),
            "invoked_function_arn": fn.function_arn,
            "memory_limit_in_mb": int(fn.memory_size),
            "aws_request_id": request_id,
            "log_group_name": fn.logs_group_name,
            "log_stream_name": self.log_stream,
            "remaining_ms": timeout * 1000,
        }
        init_lines = self._await_init()
        started = time.monotonic()
        stdin = self._process.stdin
        assert stdin is not None
        if init_lines is None:  # the init never ended
            return self._outcome(request_id, started, *self._died(self._init_lines or []))
        try:
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            return self._outcome(request_id, started, *self._died([]))
        payload, errored, lines = self._collect(started + timeout, timeout)
        self.last_used = time.monotonic()
        return self._outcome(request_id, started, payload, errored, init_lines + lines)

    def _await_init(self) -> list[str] | None:
        """Wait for the init phase to end (once per environment): its output lines, [] later, None if the
        runtime died or hung in it (then it is stopped)."""
        if self._initialised:
            return []
        lines: list[str] = []
        deadline = time.monotonic() + INIT_SECONDS
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                lines.append(f"INIT did not end within {INIT_SECONDS:.0f} seconds")
                line = None
            if line is None:
                self.stop()
                self._init_lines = lines
                return None
            if line.startswith(RESULT_MARK):
                self._initialised = True
                return lines
            lines.append(line)

    def _outcome(
        self, request_id: str, started: float, payload: str, errored: bool, lines: list[str]
    ) -> Outcome:
        elapsed = (time.monotonic() - started) * 1000
        return Outcome(payload, errored, lines, request_id, self.log_stream, elapsed)

    def _collect(self, deadline: float, timeout: float) -> tuple[str, bool, list[str]]:
        lines: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                message = f"Task timed out after {timeout:.2f} seconds"
                lines.append(message)
                return error_payload("Sandbox.Timedout", message), True, lines
            if line is None:
                return self._died(lines)
            if line.startswith(RESULT_MARK):
                result = json.loads(line[len(RESULT_MARK) :])
                return json.dumps(result["payload"]), bool(result["errored"]), lines
            lines.append(line)

    def _died(self, lines: list[str]) -> tuple[str, bool, list[str]]:
        code = self._process.wait(timeout=10)
        message = f"RequestId: the runtime exited with status {code} during the invocation"
        lines.append(message)
        return error_payload("Runtime.ExitError", message), True, lines

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a pipe to a killed process may fail to flush
                    stream.close()


def _variables(fn: LambdaFunction, log_stream: str, runtime: Runtime) -> dict[str, str]:
    """The function's variables plus the ones Lambda reserves (which win), and the embedded AWS's endpoint."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.update(runtime.aws_variables)
    env.update({str(key): str(value) for key, value in (fn.environment_vars or {}).items()})
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
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass
class FunctionPool:
    """The environments of one function configuration, and how many invocations hold one."""

    limit: int
    reserved: bool
    idle: list[Environment] = field(default_factory=list)
    busy: int = 0
    retired: bool = False
    #: Every environment started, busy or idle: stopping the embedded AWS stops them all.
    members: list[Environment] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def acquire(self, make: Callable[[], Environment], *, wait: float | None) -> Environment:
        """An idle environment, or a new one under the limit. At the limit: throttled if the concurrency is
        reserved and ``wait`` is 0, else wait up to ``wait`` seconds (None: as long as it takes)."""
        with self.cond:
            if self.reserved and wait == 0 and self.busy >= self.limit:
                raise ThrottledError(f"Rate Exceeded: the function's reserved concurrency is {self.limit}")
            if not self.cond.wait_for(lambda: self.busy < self.limit, timeout=wait):
                raise ThrottledError(
                    f"no execution environment became free in {wait:.0f}s (limit {self.limit})"
                )
            self.busy += 1
            while self.idle:
                env = self.idle.pop()
                if env.alive:
                    return env
        try:
            env = make()
        except BaseException:
            self.release(None)
            raise
        with self.cond:
            self.members = [member for member in self.members if member.alive]
            self.members.append(env)
        return env

    def release(self, env: Environment | None) -> None:
        """Give an environment back (None: it is gone); an environment of a retired pool is stopped."""
        with self.cond:
            self.busy -= 1
            keep = env is not None and env.alive and not self.retired
            if keep and env is not None:
                self.idle.append(env)
            self.cond.notify()
        if env is not None and not keep:
            env.stop()

    def drain(self, *, older_than: float = 0.0) -> None:
        """Stop the idle environments unused for ``older_than`` seconds (all of them by default)."""
        now = time.monotonic()
        with self.cond:
            stale = [env for env in self.idle if now - env.last_used >= older_than]
            self.idle = [env for env in self.idle if env not in stale]
        for env in stale:
            env.stop()


class Environments:
    """Every function's pool, keyed by what makes an environment reusable: code, handler and configuration."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._pools: dict[str, tuple[tuple[Any, ...], FunctionPool]] = {}
        self._lock = threading.Lock()

    def pool(self, fn: LambdaFunction) -> FunctionPool:
        key = _configuration(fn)
        reserved = fn.reserved_concurrency
        with self._lock:
            current = self._pools.get(fn.function_arn)
            if current is not None and current[0] == key:
                pool = current[1]
            else:
                if current is not None:  # UpdateFunctionCode/Configuration: new environments from now on
                    current[1].retired = True
                    current[1].drain()
                limit = int(reserved) if reserved is not None else UNRESERVED_LIMIT
                pool = FunctionPool(limit=limit, reserved=reserved is not None)
                self._pools[fn.function_arn] = (key, pool)
        pool.drain(older_than=IDLE_SECONDS)
        return pool

    def invoke(self, fn: LambdaFunction, event: Any, *, wait: float | None) -> Outcome:
        pool = self.pool(fn)
        if not str(fn.run_time).startswith("python"):
            message = f"the embedded AWS runs Python functions only, not {fn.run_time}"
            return Outcome(error_payload("Runtime.InvalidRuntime", message), True, [message], "", "", 0.0)
        env = pool.acquire(lambda: Environment(fn, self._code_dir(fn), self._runtime), wait=wait)
        try:
            outcome = env.invoke(fn, event)
        except BaseException:
            pool.release(None)
            env.stop()
            raise
        pool.release(env)
        return outcome

    def _code_dir(self, fn: LambdaFunction) -> Path:
        """The function's zip, unpacked once per code hash (as Lambda unpacks it into ``/var/task``)."""
        target = self._runtime.work_dir / "lambda-code" / str(fn.code_sha_256).replace("/", "_")
        if target.is_dir():
            return target
        partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}")
        code: bytes = getattr(fn, "code_bytes", b"") or b""
        partial.mkdir(parents=True)
        if code:
            with zipfile.ZipFile(io.BytesIO(code)) as archive:
                archive.extractall(partial)
        try:
            partial.rename(target)
        except OSError:  # another invocation unpacked the same code first
            shutil.rmtree(partial, ignore_errors=True)
        return target

    def stop(self) -> None:
        with self._lock:
            pools = [pool for _, pool in self._pools.values()]
            self._pools.clear()
        for pool in pools:
            pool.retired = True
            for env in list(pool.members):
                env.stop()


def _configuration(fn: LambdaFunction) -> tuple[Any, ...]:
    variables = tuple(sorted((fn.environment_vars or {}).items()))
    return (
        fn.code_sha_256,
        fn.handler,
        fn.run_time,
        fn.timeout,
        fn.memory_size,
        variables,
        fn.reserved_concurrency,
    )
