"""The curated Parquet file of one upload, written table by table, on a thread of its own when asked.

Checking a block and writing the previous one overlap: Arrow's Parquet writer releases the GIL while it
encodes and compresses, so on two cores the write costs little wall time. The queue holds at most one
table waiting, so memory stays bounded by two blocks. An error of the writer is raised to the caller at
its next ``write`` or at ``close``: never lost.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class ParquetSink:
    def __init__(self, path: Path, *, background: bool = False) -> None:
        self.path = path
        self._writer: pq.ParquetWriter | None = None
        self._error: BaseException | None = None
        self._queue: queue.Queue[pa.Table | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=1)
            self._thread = threading.Thread(target=self._drain, name="parquet-sink", daemon=True)
            self._thread.start()

    def write(self, table: pa.Table) -> None:
        self._raise()
        if self._queue is None:
            self._write(table)
        else:
            self._queue.put(table)

    def close(self) -> None:
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        if self._writer is not None:
            self._writer.close()
        self._raise()

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            # Microsecond timestamps: what Athena and Spark read (nanoseconds they may not).
            self._writer = pq.ParquetWriter(
                self.path, table.schema, coerce_timestamps="us", allow_truncated_timestamps=True
            )
        self._writer.write_table(table.cast(self._writer.schema))

    def _drain(self) -> None:
        assert self._queue is not None
        while (table := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking tables so the producer never blocks; the error is raised to it
            try:
                self._write(table)
            except BaseException as error:  # raised to the caller by write() or close()
                self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
