"""The embedded AWS's state through a restart: saved on a clean stop, loaded on the next start.

A restart is a crash at the moment of the snapshot followed by recovery, as a durable service would
recover:

* what is stored (S3 objects, tables, the registry, functions, rules, alarms, executions and their
  histories) is exactly what it was at the snapshot;
* what was in flight then runs again after the restart: a running execution resumes at the state it was
  in (``stepfunctions.resume``), an asynchronous invocation not yet concluded is queued again
  (``awslambda``), an EventBridge delivery waiting for a retry is retried (``events.retries``), a job in
  progress runs again and an endpoint is served again (``sagemaker.restarts``);
* so work interrupted after some of its effects runs again over them: our handlers are idempotent for
  exactly that reason (Lambda and Step Functions retry them in AWS too).

Only a clean stop saves: a killed process loses what happened since the last start (the README says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlcycle.local import awslambda, events
from mlcycle.local.context import LocalContext
from mlcycle.local.persistence.pickling import dump_backends, load_backends
from mlcycle.local.s3 import notifications
from mlcycle.local.sagemaker import endpoints, restarts
from mlcycle.local.stepfunctions import resume as executions

_LOG = logging.getLogger(__name__)

#: The snapshot, in the embedded AWS's work directory.
STATE_FILE = "aws-state.pickle"
#: Pickling walks moto's objects while a straggling thread of the old process may still change one.
_DUMP_ATTEMPTS = 3


def state_file(work_dir: Path) -> Path:
    return work_dir / STATE_FILE


def save(ctx: LocalContext, stop_server: Callable[[], None]) -> int:
    """Freeze what runs, stop serving requests, write the snapshot; return its size in bytes. The caller
    then uninstalls the services as on any stop (what they end after this is not in the snapshot)."""
    frozen = executions.freeze()
    endpoints.flush_capture()  # buffered capture records are written while S3 still answers
    kept = {
        "lambda": awslambda.suspend(ctx),
        "s3_sequence": notifications.next_sequence(ctx),
        "schedules_due": events.ticker().due_times(),
    }
    stop_server()
    kept["event_retries"] = events.suspend_retries(ctx)  # after the server: no new delivery since
    ctx.saved = True
    reducers = executions.reducers(frozen)
    for attempt in range(1, _DUMP_ATTEMPTS + 1):
        try:
            return dump_backends(state_file(ctx.work_dir), kept, reducers)
        except RuntimeError as error:  # "changed size during iteration": a late write; take it again
            if attempt == _DUMP_ATTEMPTS:
                raise
            _LOG.warning("snapshot attempt %d met a concurrent change (%s): again", attempt, error)
    raise AssertionError("unreachable")


def load(work_dir: Path) -> dict[str, Any] | None:
    """Put a saved snapshot into moto's (empty) backends, before the services install; return what the
    services kept, for :func:`resume`, or None when there is no snapshot. The file is set aside until the
    start succeeds (:func:`loaded` removes it, :func:`put_back` restores it): the next stop writes a new
    one, and a crash after a successful start does not bring back this one's past."""
    path = state_file(work_dir)
    if not path.exists():
        return None
    kept = load_backends(path)
    path.replace(_loading(work_dir))
    return kept


def loaded(work_dir: Path) -> None:
    _loading(work_dir).unlink(missing_ok=True)


def put_back(work_dir: Path) -> None:
    if _loading(work_dir).exists():
        _loading(work_dir).replace(state_file(work_dir))


def _loading(work_dir: Path) -> Path:
    return state_file(work_dir).with_suffix(".loading")


def resume(ctx: LocalContext, kept: dict[str, Any]) -> dict[str, Any]:
    """With the services installed on the loaded state: start again what was in flight; return counts."""
    notifications.continue_sequence(ctx, int(kept.get("s3_sequence", 1)))
    events.ticker().keep_due(kept.get("schedules_due", {}))
    counts: dict[str, Any] = dict(restarts.resume(ctx))
    counts["async_invocations"] = awslambda.resume(ctx, kept.get("lambda", {}))
    counts["event_retries"] = events.resume_retries(ctx, kept.get("event_retries", []))
    counts["executions"] = len(executions.resume())
    return counts
