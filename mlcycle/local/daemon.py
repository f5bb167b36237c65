"""``mlcycle local up | down | status | restart | reset``: the embedded AWS as a background process.

State lives in ``.mlcycle/local.json`` (port, pid, the platform's names), so other commands and real
AWS clients (``aws --endpoint-url http://127.0.0.1:4566 ...``) can find it. Its work directory is
``.mlcycle/aws``: ``down --keep-state`` leaves the saved state there, and the next ``up`` carries on from it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from mlcycle.application.connect import STATE_DIR, STATE_FILE, alive, read_state
from mlcycle.config import Settings
from mlcycle.local import faults

Say = Callable[[str], None]

#: ``status`` lists the newest faults; the file keeps them all.
FAULTS_SHOWN = 20
#: The service's work directory: kept (with the saved state in it) by ``down --keep-state``.
WORK_DIR = STATE_DIR / "aws"
#: How long ``down`` waits for the service to end (saving the state and stopping jobs take seconds).
STOP_TIMEOUT = 120.0


def serve(settings: Settings, *, port: int, assembly: Path, say: Say) -> int:
    """Run in the foreground until SIGTERM/SIGINT (or SIGUSR1: stop keeping the state in :data:`WORK_DIR`,
    for the next start to carry on from): start (from a kept state if there is one), provision, record the
    state, wait."""

    stop, keep = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def stop_keeping_state(*_: object) -> None:
        keep.set()
        stop.set()

    signal.signal(signal.SIGUSR1, stop_keeping_state)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    try:
        _serve(settings, port=port, assembly=assembly, say=say, stop=stop, keep=keep)
    finally:
        if not keep.is_set():
            shutil.rmtree(WORK_DIR, ignore_errors=True)
    return 0


def _serve(
    settings: Settings, *, port: int, assembly: Path, say: Say, stop: threading.Event, keep: threading.Event
) -> None:
    from mlcycle.local.session import local_platform

    with local_platform(settings, assembly, port=port, work_dir=WORK_DIR.resolve(), say=say) as local:
        STATE_DIR.mkdir(exist_ok=True)
        state = {
            "pid": os.getpid(),
            "endpoint_url": local.aws.endpoint_url,
            "work_dir": str(local.aws.ctx.work_dir),
            "platform": local.platform.__dict__,
        }
        STATE_FILE.write_text(json.dumps(state, indent=2))
        say(f"ready: export AWS_ENDPOINT_URL={local.aws.endpoint_url}")
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            local.keep_state = keep.is_set()
            if local.keep_state:
                say(f"stopping, keeping the state in {WORK_DIR} for the next `mlcycle local up`")
            STATE_FILE.unlink(missing_ok=True)


def up(settings: Settings, *, port: int, assembly: Path, foreground: bool, say: Say) -> int:
    if (state := read_state()) is not None:
        say(f"already running at {state['endpoint_url']} (pid {state['pid']})")
        return 0
    if foreground:
        return serve(settings, port=port, assembly=assembly, say=say)
    STATE_DIR.mkdir(exist_ok=True)
    log = (STATE_DIR / "local.log").open("w")
    cmd = [
        sys.executable,
        "-m",
        "mlcycle.cli",
        "local",
        "up",
        "--foreground",
        "--port",
        str(port),
        "--out",
        str(assembly),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (state := read_state()) is not None:
            say(
                f"embedded AWS up at {state['endpoint_url']} (pid {proc.pid}); log: {STATE_DIR / 'local.log'}"
            )
            return 0
        if proc.poll() is not None:
            say(f"embedded AWS failed to start; see {STATE_DIR / 'local.log'}")
            return 1
        time.sleep(0.2)
    say("embedded AWS did not become ready within 120 s")
    return 1


def down(*, say: Say, keep_state: bool = False) -> int:
    """Stop the service; with ``keep_state``, it saves its state first and the next ``up`` carries on from
    it (stored data, functions, executions, jobs and endpoints: mlcycle.local.persistence)."""
    state = read_state()
    if state is None:
        say("not running")
        return 0
    pid = int(str(state["pid"]))
    os.kill(pid, signal.SIGUSR1 if keep_state else signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while alive(pid):
        if time.monotonic() > deadline:
            say(f"still stopping after {STOP_TIMEOUT:.0f} s (pid {pid}); see {STATE_DIR / 'local.log'}")
            return 1
        time.sleep(0.1)
    say(f"stopped (pid {pid})" + (f"; state kept in {WORK_DIR}" if keep_state else ""))
    return 0


def forget() -> None:
    """Discard a kept state: the next ``up`` starts afresh."""
    shutil.rmtree(WORK_DIR, ignore_errors=True)


def status(*, say: Say) -> int:
    """The state; then what the background work could not do (exit 1 when anything was lost)."""
    state = read_state()
    if state is None:
        say("not running")
        return 3
    # One JSON document (scripts parse it): the faults go in it, the newest last, all of them in the file.
    found = faults.read(Path(str(state["work_dir"]))) if "work_dir" in state else []
    shown = {"count": len(found), "newest": [asdict(fault) for fault in found[-FAULTS_SHOWN:]]}
    if found:
        shown["file"] = str(Path(str(state["work_dir"])) / faults.FAULTS_FILE)
    say(json.dumps({**state, "faults": shown}, indent=2))
    return 1 if found else 0
