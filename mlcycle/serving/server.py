"""A model server that honours the SageMaker inference container contract.

``python -m mlcycle.serving.server --model-dir DIR``: processes, over the handler chain of
mlcycle.serving.handlers (loading as the SageMaker scikit-learn container does) and the ASGI app of
mlcycle.serving.app.

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
import logging
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from mlcycle.serving.app import create_app
from mlcycle.serving.handlers import (
    InferenceHandler,
    ModelServerError,
    code_dir,
    default_input_fn,
    default_output_fn,
    load_handler,
)

#: The handler names are re-exported: callers know the server by its entry point.
__all__ = [
    "LOAD_ERROR_MARKER",
    "InferenceHandler",
    "ModelServerError",
    "code_dir",
    "default_input_fn",
    "default_output_fn",
    "load_handler",
    "main",
]

log = logging.getLogger("mlcycle.serving")
#: Printed before the reason when the model cannot be loaded; the embedded AWS reads it from the log.
LOAD_ERROR_MARKER = "MODEL_SERVER_LOAD_ERROR:"


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
