"""S3 event notifications of the embedded AWS carry what AWS's carry: ``versionId`` and ``sequencer``.

moto's notification records name the key, size and ETag only. prepare-data identifies an upload by
bucket, key and version (and keys its idempotency on the sequencer too), so without them an upload of
a versioned bucket would be known by two ids: the event's (no version) and the one a client computes
from the version it put.
"""

from __future__ import annotations

import itertools
from typing import Any

from moto.s3 import notifications

from mlcycle.local.context import LocalContext

_original: Any = None
#: S3 sequencers are hex strings that grow for successive events on one key; a counter is enough here.
_sequence = itertools.count(1)


def _event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, list[dict[str, Any]]]:
    body: dict[str, list[dict[str, Any]]] = _original(event_name, bucket, key, notification_id)
    for record in body["Records"]:
        obj = record["s3"]["object"]
        version = getattr(key, "version_id", None)
        if version and version != "null":
            obj["versionId"] = version
        obj["sequencer"] = f"{next(_sequence):016X}"
    return body


def install(ctx: LocalContext) -> None:
    global _original  # noqa: PLW0603 - one patch per process, undone by uninstall()
    if _original is None:
        _original = notifications._get_s3_event
        notifications._get_s3_event = _event


def uninstall() -> None:
    global _original  # noqa: PLW0603
    if _original is not None:
        notifications._get_s3_event = _original
        _original = None
