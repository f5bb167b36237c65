"""A model server that honours the SageMaker inference container contract.

Loading follows the SageMaker scikit-learn serving container:

* ``--model-dir`` is an extracted ``model.tar.gz``;
* the user module is ``SAGEMAKER_PROGRAM`` found in ``SAGEMAKER_SUBMIT_DIRECTORY`` (``/opt/ml/model/code``
  in AWS; the ``/opt/ml/model`` prefix is mapped to ``--model-dir`` here) and may define
  ``model_fn(model_dir)``, ``input_fn(body, content_type)``, ``predict_fn(data, model)``,
  ``output_fn(prediction, accept)``, or ``transform_fn(model, body, content_type, accept)`` instead of the
  last three;
* defaults: joblib load of ``model.joblib``; CSV / JSON / NPY decoding (CSV with ``np.loadtxt``, 8x faster
  than the container's ``np.genfromtxt``, DESIGN.md section 6); ``model.predict``; JSON / CSV / NPY encoding.

As in the container, ``input_fn`` receives ``str`` for UTF-8 media types (CSV, JSON, plain text) and
``bytes`` otherwise, and the raw ``Content-Type`` header (parameters included).

Serving: a plain ASGI app on uvicorn (uvloop and httptools when installed), one worker process per core
(``--workers``, or ``SAGEMAKER_MODEL_SERVER_WORKERS`` as the containers read it) forked after the model is
loaded, sharing one socket. The model is loaded before the socket opens, so any answer from ``/ping``
means "loaded" and a model that cannot load makes the process exit non-zero with the reason on stderr.
A client's mistake is answered with its 4xx and the reason; only a failing model gets a 500.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger("mlcycle.serving")

#: Where SageMaker mounts the model inside the container; mapped to ``--model-dir``.
CONTAINER_MODEL_DIR = "/opt/ml/model"
JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
_TEXT_TYPES = frozenset({JSON, CSV, "text/plain"})
#: Printed before the reason when the model cannot be loaded; the embedded AWS reads it from the log.
LOAD_ERROR_MARKER = "MODEL_SERVER_LOAD_ERROR:"


class ModelServerError(Exception):
    """A request the server refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def media_type(header: str) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv``."""
    return header.split(";", 1)[0].strip().lower()


# ---- default handlers (what the container does when the user module leaves a function out) ----------


def default_model_fn(model_dir: str) -> Any:
    """Load ``model.joblib`` (or the only ``*.joblib`` / ``*.pkl`` file) with joblib."""
    import joblib

    root = Path(model_dir)
    candidates = [root / "model.joblib", *sorted(root.glob("*.joblib")), *sorted(root.glob("*.pkl"))]
    for path in candidates:
        if path.is_file():
            return joblib.load(path)
    raise FileNotFoundError(f"no model.joblib (or *.joblib / *.pkl) in {model_dir} and no model_fn defined")


def default_input_fn(body: bytes | str, content_type: str) -> Any:
    """Decode CSV rows (no header), JSON (a list, or ``{"instances": [...]}``) or NPY into an array."""
    kind = media_type(content_type)
    try:
        if kind == CSV:
            text = body if isinstance(body, str) else body.decode("utf-8")
            return np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=float)
        if kind == JSON:
            data = json.loads(body)
            if isinstance(data, dict) and "instances" in data:
                data = data["instances"]
            return np.asarray(data)
        if kind == NPY:
            raw = body.encode("latin-1") if isinstance(body, str) else body
            return np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as error:  # JSONDecodeError and loadtxt's conversion errors are ValueErrors
        raise ModelServerError(f"cannot decode {kind} request: {error}", status=400) from error
    raise ModelServerError(f"unsupported content type {content_type!r}", status=415)


def default_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def best_accept(accept: str, offered: tuple[str, ...]) -> str:
    """The client's most preferred type among ``offered`` (q-values honoured, ``*/*`` takes the first)."""
    ranked = []
    for order, part in enumerate(p for p in accept.split(",") if p.strip()):
        media, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                with contextlib.suppress(ValueError):
                    quality = float(value)
        ranked.append((-quality, order, media.strip().lower()))
    for negative_quality, _, media in sorted(ranked):
        if negative_quality < 0 and (media in offered or media == "*/*"):
            return offered[0] if media == "*/*" else media
    raise ModelServerError(f"unsupported accept type {accept!r}: ask for {', '.join(offered)}", status=406)


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """Encode a prediction as JSON, CSV (one row per line) or NPY."""
    kind = best_accept(accept, (JSON, CSV, NPY))
    if kind == JSON:
        return json.dumps(prediction, default=_json_default).encode(), JSON
    if kind == CSV:
        buffer = io.StringIO()
        np.savetxt(buffer, np.atleast_1d(np.asarray(prediction)), delimiter=",", fmt="%s")
        return buffer.getvalue().encode(), CSV
    if kind == NPY:
        raw = io.BytesIO()
        np.save(raw, np.asarray(prediction), allow_pickle=False)
        return raw.getvalue(), NPY
    raise ModelServerError(f"unsupported accept type {accept!r}", status=406)


# ---- the handler: user module functions over the defaults --------------------------------------------


@dataclass
class InferenceHandler:
    """The loaded model and the four functions the container chains for each request."""

    model: Any
    input_fn: Callable[[bytes | str, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    transform_fn: Callable[[Any, bytes | str, str, str], Any] | None = None
    default_accept: str = JSON

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Run one request through the chain; returns the response body and its content type."""
        accept = self._accept(accept)
        payload: bytes | str = body.decode("utf-8") if media_type(content_type) in _TEXT_TYPES else body
        if self.transform_fn is not None:
            result = self.transform_fn(self.model, payload, content_type, accept)
        else:
            data = self.input_fn(payload, content_type)
            prediction = self.predict_fn(data, self.model)
            result = self.output_fn(prediction, accept)
        return _as_response(result, accept)

    def _accept(self, accept: str) -> str:
        """As the container passes it: none or ``*/*`` means SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, anything
        else goes to the handlers as sent (q-values and all)."""
        return self.default_accept if accept.strip() in ("", "*/*") else accept


def _as_response(result: Any, accept: str) -> tuple[bytes, str]:
    """Accept what user ``output_fn``s return: bytes/str, ``(body, content_type)``, or JSON-able data."""
    content_type = media_type(accept.split(",", 1)[0])
    if isinstance(result, tuple) and len(result) == 2:
        result, content_type = result
    if isinstance(result, str):
        return result.encode(), content_type
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result), content_type
    return json.dumps(result, default=_json_default).encode(), JSON


def code_dir(model_dir: Path) -> Path:
    """SAGEMAKER_SUBMIT_DIRECTORY with the container's ``/opt/ml/model`` mapped to ``model_dir``."""
    submit = os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", f"{CONTAINER_MODEL_DIR}/code")
    if submit == CONTAINER_MODEL_DIR or submit.startswith(CONTAINER_MODEL_DIR + "/"):
        return model_dir / submit[len(CONTAINER_MODEL_DIR) :].lstrip("/")
    return Path(submit)


def _import_user_module(model_dir: Path) -> ModuleType | None:
    program = os.environ.get("SAGEMAKER_PROGRAM", "")
    if not program:
        return None
    directory = code_dir(model_dir)
    path = directory / (program if program.endswith(".py") else f"{program}.py")
    if not path.is_file():
        raise FileNotFoundError(f"SAGEMAKER_PROGRAM {program!r} not found in {directory}")
    # The code dir goes first on sys.path so the user module's sibling imports resolve, as in the container.
    sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def load_handler(model_dir: Path) -> InferenceHandler:
    """Import the user module (if any) and load the model, the way the container does at start-up."""
    module = _import_user_module(model_dir)

    def pick(name: str, default: Any) -> Any:
        return getattr(module, name, None) or default

    model_fn = pick("model_fn", default_model_fn)
    return InferenceHandler(
        model=model_fn(str(model_dir)),
        input_fn=pick("input_fn", default_input_fn),
        predict_fn=pick("predict_fn", default_predict_fn),
        output_fn=pick("output_fn", default_output_fn),
        transform_fn=pick("transform_fn", None),
        default_accept=os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON),
    )


# ---- HTTP ----------------------------------------------------------------------------------------------


def _status_of(error: Exception) -> int:
    """A client's mistake keeps its 4xx: ours (ModelServerError) or a user module's (an exception with an
    integer ``status`` from 400 to 499, as mlcycle's inference.ClientError carries); anything else is the
    model failing, a 500."""
    status = getattr(error, "status", None)
    return status if isinstance(status, int) and 400 <= status < 500 else 500


class App:
    """The ASGI app: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``.

    Plain ASGI, no framework: a request is a few microseconds of routing around the model's own work. The
    prediction runs on the event loop: every worker process serves one request at a time, as the
    container's workers do, and the server runs a worker per core.
    """

    def __init__(self, handler: InferenceHandler) -> None:
        self.handler = handler

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
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        body = await _read_body(receive)
        try:
            payload, out_type = self.handler.invoke(
                body, headers.get("content-type", JSON), headers.get("accept", "")
            )
        except Exception as error:
            status = _status_of(error)
            if status == 500:  # the model failed: the client gets the message, the log the traceback
                log.exception("invocation failed")
                message = f"{type(error).__name__}: {error}"
            else:
                message = str(error)
            await _respond(send, status, message.encode(), "text/plain")
            return
        await _respond(send, 200, payload, out_type)

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


# ---- processes -----------------------------------------------------------------------------------------


def default_workers() -> int:
    """``SAGEMAKER_MODEL_SERVER_WORKERS`` as the framework containers read it, else one per core."""
    configured = os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "")
    return int(configured) if configured.isdigit() and int(configured) > 0 else (os.cpu_count() or 1)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlcycle.serving.server", description=__doc__)
    parser.add_argument("--model-dir", required=True, type=Path, help="an extracted model.tar.gz")
    parser.add_argument("--port", type=int, default=8080, help="SageMaker containers listen on 8080")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the socket (default: SAGEMAKER_MODEL_SERVER_WORKERS, else one a core)",
    )
    return parser.parse_args(argv)


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _serve(handler: InferenceHandler, sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(
        create_app(handler),
        loop=_available("uvloop", "asyncio"),
        http=_available("httptools", "h11"),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _available(module: str, fallback: str) -> str:
    return module if importlib.util.find_spec(module) is not None else fallback


def _supervise(handler: InferenceHandler, sock: socket.socket, workers: int) -> int:
    """Fork ``workers`` children after the model is loaded (they share its memory and the socket), replace
    any that dies, and stop them all on SIGTERM/SIGINT."""
    children: set[int] = set()
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                _serve(handler, sock)
            finally:
                os._exit(0)
        children.add(pid)

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        spawn()
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping:
            log.warning("worker %d exited; starting another", pid)
            spawn()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        handler = load_handler(args.model_dir.resolve())
    except Exception as error:
        traceback.print_exc()
        print(f"{LOAD_ERROR_MARKER} {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    workers = args.workers or default_workers()
    sock = _listen(args.host, args.port)
    log.info("model loaded from %s; %d worker(s) on %s:%d", args.model_dir, workers, args.host, args.port)
    if workers == 1:
        _serve(handler, sock)
        return 0
    return _supervise(handler, sock, workers)


if __name__ == "__main__":
    sys.exit(main())
