"""The model server's HTTP side: a plain ASGI app (``GET /ping``, ``POST /invocations``,
``GET /execution-parameters``) over an :class:`mlcycle.serving.handlers.InferenceHandler`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any

from mlcycle.serving.handlers import JSON, InferenceHandler

log = logging.getLogger("mlcycle.serving")


def _status_of(error: Exception) -> int:
    """A client's mistake keeps its 4xx: ours (ModelServerError) or a user module's (an exception with an
    integer ``status`` from 400 to 499, as mlcycle's inference_codecs.ClientError carries); anything else
    is the model failing, a 500."""
    status = getattr(error, "status", None)
    return status if isinstance(status, int) and 400 <= status < 500 else 500


#: At most this many requests share one prediction.
MAX_BATCH = 32
Result = tuple[bytes, str] | Exception


class App:
    """The ASGI app: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``.

    Plain ASGI, no framework: a request is a few microseconds of routing around the model's own work. The
    prediction runs on the event loop (the server runs a worker process per core). When the user module
    can predict several requests at once (``transform_many``), the requests that arrive together share
    one prediction: each waits in a queue that the loop drains as soon as it has read every request ready
    on its sockets. A lone request never waits for company; under load, requests that arrived while the
    model was busy go through together, so the model's fixed cost per call is paid once for all of them.
    """

    def __init__(self, handler: InferenceHandler) -> None:
        self.handler = handler
        self._queue: deque[tuple[tuple[bytes, str, str], asyncio.Future[Result]]] = deque()
        self._draining = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        route = (scope["method"], scope["path"])
        if route == ("GET", "/ping"):
            await _respond(send, 200, b"", "text/plain")
        elif route == ("GET", "/execution-parameters"):
            # What batch transform asks a container for; answered like the framework containers do.
            body = json.dumps(
                {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
            )
            await _respond(send, 200, body.encode(), JSON)
        elif route == ("POST", "/invocations"):
            await self._invocations(scope, receive, send)
        else:
            await _respond(
                send, 404 if route[1] not in _ROUTES else 405, f"no {route[0]} {route[1]}".encode()
            )

    async def _invocations(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        content_type, accept = JSON, ""
        for key, value in scope["headers"]:
            name = key.lower()
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
        request = (await _read_body(receive), content_type, accept)
        if self.handler.transform_many is None:
            result: Result = self.handler.invoke_many([request])[0]
        else:
            future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            self._queue.append((request, future))
            if not self._draining:
                # After the callbacks already due: every request read in this turn of the loop joins.
                self._draining = True
                asyncio.get_running_loop().call_soon(self._drain)
            result = await future
        if isinstance(result, Exception):
            status = _status_of(result)
            if status == 500:  # the model failed: the client gets the message, the log the traceback
                log.error("invocation failed", exc_info=result)
                message = f"{type(result).__name__}: {result}"
            else:
                message = str(result)
            await _respond(send, status, message.encode(), "text/plain")
            return
        await _respond(send, 200, *result)

    def _drain(self) -> None:
        """Predict the queued requests together (up to :data:`MAX_BATCH`) and hand each its answer."""
        batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
        try:
            results = self.handler.invoke_many([request for request, _ in batch])
        except Exception as error:  # invoke_many answers per request; this is a bug, not a client's
            results = [error] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        if self._queue:
            asyncio.get_running_loop().call_soon(self._drain)
        else:
            self._draining = False

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


_ROUTES = frozenset({"/ping", "/invocations", "/execution-parameters"})


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Any, status: int, body: bytes, content_type: str = "text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(handler: InferenceHandler) -> App:
    return App(handler)
