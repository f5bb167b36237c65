"""Reading a view's snapshot through Arrow's S3 filesystem while ingestion replaces it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pytest

from mlcycle.features import offline, snapshots


class _Filesystem:
    """Serves the given bodies, one per open: what ranged reads of a replaced object can see."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = bodies
        self.opened = 0

    @contextmanager
    def open_input_file(self, _path: str) -> Iterator[Any]:
        body = self.bodies[min(self.opened, len(self.bodies) - 1)]
        self.opened += 1
        yield pa.BufferReader(body)


def _snapshot() -> bytes:
    return snapshots.to_bytes(pa.table({"x": [1, 2, 3]}))


def _objects(monkeypatch: pytest.MonkeyPatch, bodies: list[bytes]) -> tuple[offline.S3Objects, _Filesystem]:
    filesystem = _Filesystem(bodies)
    monkeypatch.setattr(offline, "s3_filesystem", lambda _s3: filesystem)
    return offline.S3Objects(None, "features"), filesystem  # type: ignore[arg-type]


def test_a_snapshot_replaced_during_a_read_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _snapshot()
    mixed = whole[: len(whole) // 2] + b"\0" * (len(whole) - len(whole) // 2)  # its footer is gone
    objects, filesystem = _objects(monkeypatch, [mixed, whole])
    table = objects.read_ipc("snapshots/v.arrow", lambda _schema: True)
    assert table is not None and table["x"].to_pylist() == [1, 2, 3]
    assert filesystem.opened == 2


def test_a_snapshot_that_stays_unreadable_falls_back_to_the_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects, filesystem = _objects(monkeypatch, [b"not an arrow file at all"])
    assert objects.read_ipc("snapshots/v.arrow", lambda _schema: True) is None
    assert filesystem.opened == offline.SNAPSHOT_READ_ATTEMPTS
