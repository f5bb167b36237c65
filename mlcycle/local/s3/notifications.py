"""S3 event notifications of the embedded AWS carry what AWS's carry: ``versionId`` and ``sequencer``.

moto's notification records name the key, size and ETag only. prepare-data identifies an upload by
bucket, key and version (and keys its idempotency on the sequencer too), so without them an upload of
a versioned bucket would be known by two ids: the event's (no version) and the one a client computes
from the version it put.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from moto.s3 import notifications

from mlcycle.local import context
from mlcycle.local.context import LocalContext


@dataclass
class NotificationsState:
    """moto's own event builder, and the sequencer counter of the running embedded AWS."""

    original: Callable[..., dict[str, list[dict[str, Any]]]]
    #: S3 sequencers are hex strings that grow for successive events on one key; a counter is enough here.
    sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1))


def _event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, list[dict[str, Any]]]:
    state = context.installed(NotificationsState)
    body = state.original(event_name, bucket, key, notification_id)
    for record in body["Records"]:
        obj = record["s3"]["object"]
        version = getattr(key, "version_id", None)
        if version and version != "null":
            obj["versionId"] = version
        obj["sequencer"] = f"{next(state.sequence):016X}"
    return body


def install(ctx: LocalContext) -> None:
    if NotificationsState not in ctx.services:
        ctx.services[NotificationsState] = NotificationsState(original=notifications._get_s3_event)
        notifications._get_s3_event = _event


def next_sequence(ctx: LocalContext) -> int:
    """The sequencer the next event gets (a restart carries it on: sequencers only grow)."""
    state: NotificationsState = ctx.services[NotificationsState]
    return next(state.sequence)


def continue_sequence(ctx: LocalContext, start: int) -> None:
    ctx.services[NotificationsState].sequence = itertools.count(start)


def uninstall() -> None:
    ctx = context.running()
    state = ctx.services.pop(NotificationsState, None) if ctx is not None else None
    if state is not None:
        notifications._get_s3_event = state.original
