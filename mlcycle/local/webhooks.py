"""The embedded AWS's webhook sink: an HTTP server that stands in for Slack, PagerDuty and Teams.

Alert channels are incoming webhooks outside AWS, so no moto service plays them. The sink records every
request it gets (per path), answers like the real receivers (``ok``, or PagerDuty's ``success`` with the
event's ``dedup_key``), and can be scripted to refuse the next requests to a path (a 429 with
``Retry-After``, a 500, a 400) so retries can be watched. A small control API under ``/_sink/`` lets
another process (a test driving the ``mlcycle local`` daemon) script it and read what arrived:

* ``GET /_sink/requests?path=/slack`` - ``{"requests": [...]}`` (every path when none is given);
* ``POST /_sink/script`` with ``{"path": "/slack", "responses": [{"status": 429, "headers": {...}}]}``;
* ``POST /_sink/reset`` - forget the requests and scripts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sink/"
#: Requests kept per path (a runaway sender must not fill the memory).
MAX_REQUESTS_PER_PATH = 10_000


@dataclass(frozen=True)
class RecordedRequest:
    """One request the sink received: its JSON body parsed, or the raw text when it is not JSON."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    #: Epoch seconds of its arrival.
    received_at: float

    @property
    def json(self) -> Any:
        """The parsed body (None when it was not JSON)."""
        return None if isinstance(self.body, str) else self.body

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScriptedResponse:
    """An answer queued for the next request to a path."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None

    @classmethod
    def of(cls, value: ScriptedResponse | tuple[Any, ...] | dict[str, Any] | int) -> ScriptedResponse:
        """From ``(429, {"Retry-After": "1"})``, ``(400, {}, "bad")``, a status alone, or the control
        API's ``{"status": ..., "headers": ..., "body": ...}``."""
        if isinstance(value, ScriptedResponse):
            return value
        if isinstance(value, int):
            return cls(value)
        if isinstance(value, dict):
            return cls(int(value["status"]), dict(value.get("headers") or {}), value.get("body"))
        status, headers, *body = value
        return cls(int(status), dict(headers or {}), body[0] if body else None)


class WebhookSink:
    """An HTTP server on 127.0.0.1 (a free port) that records webhooks and answers as scripted."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._requests: dict[str, deque[RecordedRequest]] = defaultdict(
            lambda: deque(maxlen=MAX_REQUESTS_PER_PATH)
        )
        self._order: list[RecordedRequest] = []
        self._scripts: dict[str, deque[ScriptedResponse]] = defaultdict(deque)

    # Lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> WebhookSink:
        if self._server is None:
            self._server = _Server(self._address, _Handler, sink=self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="webhook-sink", kwargs={"poll_interval": 0.1}
            )
            self._thread.daemon = True
            self._thread.start()
            log.info("webhook sink listening on %s", self.url())
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the webhook sink is not started")
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on the sink (give it to a channel's secret)."""
        return f"http://{self._address[0]}:{self.port}/{path.lstrip('/')}"

    # What arrived, what to answer ---------------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """The requests received (to ``path``, or all), oldest first."""
        with self._changed:
            if path is None:
                return list(self._order)
            return list(self._requests.get(_normal(path), ()))

    def wait_for(
        self, path: str | None = None, count: int = 1, timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """The requests to ``path`` once at least ``count`` arrived; ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(got := self.requests(path)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(got)} of {count} requests to {path or 'the sink'} arrived")
                self._changed.wait(left)
            return got

    def script(
        self, path: str, *responses: ScriptedResponse | tuple[Any, ...] | dict[str, Any] | int
    ) -> None:
        """Answer the next requests to ``path`` with ``responses``, in order; then 200 again."""
        with self._changed:
            self._scripts[_normal(path)].extend(ScriptedResponse.of(r) for r in responses)

    def reset(self) -> None:
        """Forget every request and script."""
        with self._changed:
            self._requests.clear()
            self._order.clear()
            self._scripts.clear()

    def _receive(self, request: RecordedRequest) -> ScriptedResponse:
        """Record ``request`` and choose its answer (the handler threads call this)."""
        with self._changed:
            self._requests[request.path].append(request)
            self._order.append(request)
            del self._order[:-MAX_REQUESTS_PER_PATH]
            queued = self._scripts.get(request.path)
            answer = queued.popleft() if queued else None
            self._changed.notify_all()
        return answer or _default_answer(request.body)


def _default_answer(body: Any) -> ScriptedResponse:
    """What the real receivers answer: PagerDuty's ``success`` with the dedup key, Slack's ``ok``."""
    if isinstance(body, dict) and ("dedup_key" in body or "routing_key" in body):
        key = body.get("dedup_key") or uuid.uuid4().hex
        document = {"status": "success", "message": "Event processed", "dedup_key": key}
        return ScriptedResponse(200, {"Content-Type": "application/json"}, json.dumps(document))
    return ScriptedResponse(200, {"Content-Type": "text/plain"}, "ok")


def _normal(path: str) -> str:
    return "/" + urlsplit(path).path.lstrip("/")


def _parse(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], *, sink: WebhookSink) -> None:
        self.sink = sink
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mlcycle-webhook-sink"

    @property
    def sink(self) -> WebhookSink:
        return cast(_Server, self.server).sink

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if parts.path.startswith(CONTROL_PREFIX):
            self._control(parts.path.removeprefix(CONTROL_PREFIX), parts.query, raw)
            return
        request = RecordedRequest(
            method=self.command,
            path=_normal(parts.path),
            query=parts.query,
            headers=dict(self.headers.items()),
            body=_parse(raw),
            received_at=time.time(),
        )
        self._answer(self.sink._receive(request))

    def _control(self, action: str, query: str, raw: bytes) -> None:
        """The control API: read the requests, script answers, reset."""
        try:
            if action == "requests" and self.command == "GET":
                path = parse_qs(query).get("path", [None])[0]
                found = [r.to_dict() for r in self.sink.requests(path)]
                self._json(200, {"requests": found})
            elif action == "script" and self.command == "POST":
                document = json.loads(raw or b"{}")
                self.sink.script(str(document["path"]), *document.get("responses", []))
                self._json(200, {"scripted": len(document.get("responses", []))})
            elif action == "reset" and self.command == "POST":
                self.sink.reset()
                self._json(200, {"reset": True})
            else:
                self._json(404, {"error": f"no control action {self.command} {action!r}"})
        except (KeyError, TypeError, ValueError) as exc:
            self._json(400, {"error": f"{type(exc).__name__}: {exc}"})

    def _json(self, status: int, document: dict[str, Any]) -> None:
        self._answer(ScriptedResponse(status, {"Content-Type": "application/json"}, json.dumps(document)))

    def _answer(self, response: ScriptedResponse) -> None:
        body = (response.body if response.body is not None else _reason(response.status)).encode()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if "content-type" not in {name.lower() for name in response.headers}:
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Not logged: a webhook's path is its secret (the recorded requests say what arrived)."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("webhook sink: " + format, *args)


def _reason(status: int) -> str:
    """A body for a scripted answer that gave none (Slack answers its errors as text)."""
    return {429: "rate_limited", 400: "invalid_payload", 404: "no_service"}.get(status, f"status {status}")
