"""What the embedded AWS's background work could not do, kept where ``mlcycle local status`` shows it.

Some of its work has no caller to raise to: the event put after a job or an endpoint changed state, an
endpoint's metrics, a capture flush, a shadow copy, a composite alarm it cannot evaluate. In AWS such a
loss shows somewhere (a failed status, a target's dead-letter queue, a rejected API call); here each one is
logged and appended to ``faults.jsonl`` in the work directory, which ``mlcycle local status`` lists and
tests can read. A log line alone is not enough: nobody reads the log of a background process.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlcycle.local import context
from mlcycle.local.context import LocalContext

FAULTS_FILE = "faults.jsonl"

_LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Fault:
    at: str
    #: What could not be done, naming the resource (``event SageMaker Endpoint State Change of churn``).
    what: str
    error: str


def record(what: str, error: BaseException | str, ctx: LocalContext | None = None) -> Fault:
    """Log the fault and keep it in the running embedded AWS's work directory (when one runs)."""
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
    fault = Fault(datetime.now(UTC).isoformat(timespec="milliseconds"), what, text)
    ctx = ctx or context.running()
    if ctx is not None and ctx.saved:  # after a restart's snapshot: this work runs again after it
        _LOG.info("after the state was saved for a restart (runs again after it): %s: %s", what, text)
        return fault
    _LOG.error("%s: %s", what, text, exc_info=error if isinstance(error, BaseException) else None)
    if ctx is not None:
        with _LOCK, (ctx.work_dir / FAULTS_FILE).open("a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(fault)) + "\n")
    return fault


def read(work_dir: Path) -> list[Fault]:
    """The faults kept so far, oldest first."""
    path = work_dir / FAULTS_FILE
    if not path.exists():
        return []
    with _LOCK:
        lines = path.read_text(encoding="utf-8").splitlines()
    return [Fault(**json.loads(line)) for line in lines if line.strip()]
