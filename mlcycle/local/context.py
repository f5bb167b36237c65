"""The running embedded AWS: what every emulated service needs to know about it, and its services' state.

Each service module keeps its state (patched methods, worker threads, running jobs and servers) in one
object of its own class, registered on the running :class:`LocalContext` by its ``install`` and removed
by its ``uninstall``. moto calls the patched methods with moto's own objects only, so they reach that
state through :func:`installed`: the one process-wide pointer to the running instance, set by
``mlcycle.local.server.start`` and cleared by ``stop`` (moto's backends are process-wide too, so only
one embedded AWS runs in a process at a time).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

ACCOUNT_ID = "123456789012"  # moto's default account

S = TypeVar("S")


@dataclass
class LocalContext:
    """The running embedded AWS, handed to each module's ``install``."""

    endpoint_url: str
    region: str
    work_dir: Path
    account: str = ACCOUNT_ID
    #: Interpreter for SageMaker job processes and local model servers.
    python: str = field(default_factory=lambda: sys.executable)
    #: Schedules fire this many times faster than their expression says (demos and tests).
    time_scale: float = 1.0
    #: Set once a restart saved the state: what the old instance's background work does after it is
    #: discarded with it (its losses are no faults: the work runs again after the restart).
    saved: bool = False
    #: Each service's state, by its class (see :func:`installed`).
    services: dict[type, Any] = field(default_factory=dict)
    #: boto3 clients the services call this embedded AWS with, by service (see ``common.s3files``).
    clients: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    clients_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def port(self) -> int:
        return int(self.endpoint_url.rsplit(":", 1)[1])


class _Running:
    """The pointer from moto's patched methods to the running instance (a holder, not a ``global``)."""

    ctx: LocalContext | None = None


def activate(ctx: LocalContext) -> None:
    _Running.ctx = ctx


def deactivate(ctx: LocalContext) -> None:
    if _Running.ctx is ctx:
        _Running.ctx = None


def running() -> LocalContext | None:
    return _Running.ctx


def installed(kind: type[S]) -> S:
    """The running instance's state of one service; raises when that service is not installed."""
    state = installed_or_none(kind)
    if state is None:
        raise RuntimeError(f"{kind.__module__} is not installed (no embedded AWS is running)")
    return state


def installed_or_none(kind: type[S]) -> S | None:
    ctx = _Running.ctx
    return None if ctx is None else cast(S | None, ctx.services.get(kind))
