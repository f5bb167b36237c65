"""SageMaker data capture: the capture configuration of an endpoint, one JSONL record per sampled
invocation, and the buffer records wait in before they are written to S3."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Invocation:
    endpoint: str
    body: bytes
    content_type: str
    accept: str
    custom_attributes: str | None
    inference_id: str | None
    target_variant: str | None


@dataclass(frozen=True)
class CaptureSettings:
    """An endpoint config's DataCaptureConfig, resolved."""

    destination: str
    sampling_percentage: float
    capture_input: bool
    capture_output: bool
    csv_types: frozenset[str]
    json_types: frozenset[str]

    @classmethod
    def of(cls, config: Mapping[str, Any] | None) -> CaptureSettings | None:
        if not config or not config.get("EnableCapture", True) or not config.get("DestinationS3Uri"):
            return None
        modes = {option.get("CaptureMode") for option in config.get("CaptureOptions") or []}
        headers = config.get("CaptureContentTypeHeader") or {}
        return cls(
            destination=str(config["DestinationS3Uri"]).rstrip("/"),
            sampling_percentage=float(config.get("InitialSamplingPercentage", 100)),
            capture_input="Input" in modes,
            capture_output="Output" in modes,
            csv_types=frozenset(t.lower() for t in headers.get("CsvContentTypes") or ["text/csv"]),
            json_types=frozenset(t.lower() for t in headers.get("JsonContentTypes") or ["application/json"]),
        )

    def encode(self, data: bytes, content_type: str, mode: str) -> dict[str, str]:
        """SageMaker's capture entry: CSV and JSON stay text, anything else is base64."""
        kind = content_type.split(";", 1)[0].strip().lower()
        encoding = "CSV" if kind in self.csv_types else "JSON" if kind in self.json_types else "BASE64"
        text = base64.b64encode(data).decode() if encoding == "BASE64" else data.decode("utf-8", "replace")
        return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


@dataclass
class PendingCapture:
    """Capture lines of one S3 hour prefix waiting to be written, and how many writes of them failed."""

    entries: list[tuple[datetime, str]] = field(default_factory=list)
    failed_writes: int = 0


@dataclass
class CaptureBuffer:
    """Capture lines waiting for the next flush, grouped by S3 hour prefix. Lines whose write failed go
    back in (:meth:`put_back`) for the next flush: a failed write never drops them."""

    pending: dict[str, PendingCapture] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, prefix: str, when: datetime, line: str) -> None:
        with self.lock:
            self.pending.setdefault(prefix, PendingCapture()).entries.append((when, line))

    def take(self) -> dict[str, PendingCapture]:
        with self.lock:
            taken, self.pending = self.pending, {}
        return taken

    def put_back(self, prefix: str, batch: PendingCapture) -> None:
        with self.lock:
            waiting = self.pending.setdefault(prefix, PendingCapture())
            waiting.entries[:0] = batch.entries
            waiting.failed_writes = max(waiting.failed_writes, batch.failed_writes)


def capture_record(
    settings: CaptureSettings,
    request: Invocation,
    body: bytes,
    content_type: str,
    when: datetime,
    *,
    status: int = 200,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One line of SageMaker's capture JSONL. A failed invocation (``status`` not 2xx) keeps its answer
    (the error body) as the output and its status as ``eventMetadata.invocationStatus``: an mlcycle
    extension, since SageMaker captures successful invocations only."""
    capture: dict[str, Any] = {}
    if settings.capture_input:
        capture["endpointInput"] = settings.encode(request.body, request.content_type, "INPUT")
    if settings.capture_output:
        capture["endpointOutput"] = settings.encode(body, content_type, "OUTPUT")
    metadata: dict[str, Any] = {
        "eventId": event_id or str(uuid.uuid4()),
        "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if request.inference_id:
        metadata["inferenceId"] = request.inference_id
    if not 200 <= status < 300:
        metadata["invocationStatus"] = status
    return {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}
