"""SageMaker job bookkeeping in the embedded AWS: the running jobs, their directories and environment."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mlcycle.local import context
from mlcycle.local.common.processes import ProcessResult
from mlcycle.local.context import LocalContext
from mlcycle.local.patching import MethodPatches

HOST = "algo-1"
FAILURE_REASON_LIMIT = 1024
#: Hyperparameters the SageMaker SDK adds for the framework; the toolkit keeps them out of the user's args.
FRAMEWORK_PREFIX = "sagemaker_"
PYTHON = re.compile(r"^(?:/usr(?:/local)?/bin/)?python(?:3(?:\.\d+)?)?$")
JobKind = Literal["training", "processing", "transform"]
#: Each kind's directory under the work dir.
_JOB_DIRS: dict[JobKind, str] = {
    "training": "jobs",
    "processing": "processing-jobs",
    "transform": "transform-jobs",
}


@dataclass
class JobRun:
    """A job this module is running (or ran): its thread, its stop switch, its directory."""

    kind: JobKind
    name: str
    root: Path
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


@dataclass
class JobsState:
    """The SageMaker patches' state on the running embedded AWS: moto's replaced methods, the jobs."""

    ctx: LocalContext
    patches: MethodPatches
    runs: dict[tuple[str, str], JobRun] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: moto's response handler drops CreateProcessingJob's ``Environment``: the response patch parks it
    #: here, per request thread, for the backend patch to pick up.
    request: threading.local = field(default_factory=threading.local)


def jobs_state() -> JobsState:
    return context.installed(JobsState)


def start_run(state: JobsState, run: JobRun, target: Callable[[], None]) -> None:
    with state.lock:
        state.runs[(run.kind, run.name)] = run
    run.thread = threading.Thread(target=target, name=f"sagemaker-{run.kind}-{run.name}", daemon=True)
    run.thread.start()


def job_root(state: JobsState | None, kind: JobKind, name: str) -> Path:
    """Where a job's container layout lives (tests and debugging pass ``None``: the installed instance)."""
    state = state or jobs_state()
    return state.ctx.work_dir / _JOB_DIRS[kind] / name


def base_env(ctx: LocalContext) -> dict[str, str]:
    """The server process's environment plus explicit AWS settings (handlers may have changed os.environ)."""
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=ctx.endpoint_url,
        AWS_REGION=ctx.region,
        AWS_DEFAULT_REGION=ctx.region,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        PYTHONUNBUFFERED="1",
    )
    return env


def algorithm_error(failure_file: Path, result: ProcessResult) -> str:
    """FailureReason for a failed script: the failure file it wrote, else the tail of its stderr."""
    written = failure_file.read_text(errors="replace").strip() if failure_file.is_file() else ""
    if written:
        return f"AlgorithmError: {written}"[:FAILURE_REASON_LIMIT]
    # The toolkit's own failure message; the tail is the end of stderr, where a traceback's cause is.
    tail = "\n".join(result.stderr_tail[-10:])
    reason = f'AlgorithmError: ExecuteUserScriptError:\nExitCode {result.exit_code}\nErrorMessage "{tail}"'
    return reason[-FAILURE_REASON_LIMIT:] if len(reason) > FAILURE_REASON_LIMIT else reason


def join_threads(threads: Iterable[threading.Thread | None], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
