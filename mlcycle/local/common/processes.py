"""A user's process (a job script, a model server): run, its output pumped to a log, stopped politely."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from mlcycle.local import faults
from mlcycle.local.common.s3files import boto_client
from mlcycle.local.context import LocalContext

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import InputLogEventTypeDef


#: Seconds a stopped or timed-out job gets between SIGTERM and SIGKILL (AWS gives 120).
stop_grace_seconds: float = 10.0


@dataclass
class ProcessResult:
    exit_code: int | None
    ended_by: Literal["exit", "stop", "timeout"]
    stderr_tail: list[str]
    #: (epoch milliseconds, line) for CloudWatch Logs and metric regexes.
    log_events: list[tuple[int, str]]


@dataclass
class UserProcess:
    """One job process: its output is pumped to a log file; stop requests and a deadline end it."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    max_runtime: float | None = None
    _events: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=20_000))
    _stderr: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, stop: threading.Event) -> ProcessResult:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log_file:
            # A new session makes the whole process group killable (scripts may fork workers).
            process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            pumps = [
                threading.Thread(target=self._pump, args=(process.stdout, log_file, False), daemon=True),
                threading.Thread(target=self._pump, args=(process.stderr, log_file, True), daemon=True),
            ]
            for pump in pumps:
                pump.start()
            ended_by = self._wait(process, stop)
            # The container ends with its entry point: nothing the script forked outlives it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            for pump in pumps:
                pump.join(timeout=10)
        return ProcessResult(process.returncode, ended_by, list(self._stderr), list(self._events))

    def _pump(self, stream: IO[bytes], log_file: IO[str], is_stderr: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._lock:
                log_file.write(line + "\n")
                log_file.flush()
                self._events.append((int(time.time() * 1000), line))
                if is_stderr:
                    self._stderr.append(line)
        stream.close()

    def _wait(
        self, process: subprocess.Popen[bytes], stop: threading.Event
    ) -> Literal["exit", "stop", "timeout"]:
        deadline = time.monotonic() + self.max_runtime if self.max_runtime else None
        while process.poll() is None:
            if stop.wait(0.05):
                terminate(process)
                return "stop"
            if deadline is not None and time.monotonic() > deadline:
                terminate(process)
                return "timeout"
        return "exit"


def terminate(process: subprocess.Popen[bytes], grace: float | None = None) -> None:
    """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL it (what SageMaker does on stop)."""
    for sig, wait in (
        (signal.SIGTERM, stop_grace_seconds if grace is None else grace),
        (signal.SIGKILL, 5.0),
    ):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def publish_logs(ctx: LocalContext, group: str, stream: str, events: Sequence[tuple[int, str]]) -> None:
    """Best effort: the job's log in CloudWatch Logs, where AWS puts it."""
    logs: CloudWatchLogsClient = boto_client(ctx, "logs")
    try:
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        batch: list[InputLogEventTypeDef] = [{"timestamp": ms, "message": line or " "} for ms, line in events]
        for start in range(0, len(batch), 5_000):
            logs.put_log_events(
                logGroupName=group, logStreamName=stream, logEvents=batch[start : start + 5_000]
            )
    except Exception as error:  # never fail a job over its logs; their loss is kept where it is seen
        faults.record(f"log stream {group}/{stream} was not published to CloudWatch Logs", error, ctx)
