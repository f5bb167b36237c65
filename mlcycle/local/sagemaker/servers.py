"""Local model servers: one ``python -m mlcycle.serving.server`` process per production variant, serving
an extracted ``model.tar.gz`` on a free 127.0.0.1 port, healthy once it answers ``/ping``."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from mlcycle.local.common.processes import terminate
from mlcycle.local.common.s3files import download_s3_file, extract_tar_gz, s3_client
from mlcycle.local.context import LocalContext
from mlcycle.local.sagemaker.jobs import base_env

log = logging.getLogger(__name__)

#: How long a model server may take to answer /ping (importing scikit-learn cold takes ~5 s).
server_start_timeout: float = 120.0
#: Where the project's ``mlcycle`` package lives, so the server runs from any interpreter.
_PROJECT_ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DeployError(Exception):
    """A variant's server could not start; the message becomes the endpoint's FailureReason."""


@dataclass
class ModelServer:
    """One running ``mlcycle.serving.server`` process serving one production variant."""

    variant: str
    model_name: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    weight: float = 1.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def log_tail(self, lines: int = 10) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            terminate(self.process, grace=5.0)


def _container(backend: Any, model_name: str) -> dict[str, Any]:
    model = backend._models.get(model_name)
    if model is None:
        raise DeployError(f"Could not find model '{model_name}'.")
    container = model.primary_container or (model.containers or [None])[0]
    if not container or not container.get("ModelDataUrl"):
        raise DeployError(f"model {model_name}: local hosting needs PrimaryContainer.ModelDataUrl")
    return dict(container)


def _stage_model(ctx: LocalContext, container: dict[str, Any], directory: Path) -> dict[str, str]:
    """Download and extract the model (and an s3:// submit directory); returns the server environment."""
    s3 = s3_client(ctx)
    model_dir = directory / "model"
    try:
        archive = download_s3_file(s3, container["ModelDataUrl"], directory / "model.tar.gz")
        extract_tar_gz(archive, model_dir)
    except Exception as error:
        raise DeployError(
            f"ClientError: could not download model data from {container['ModelDataUrl']}: {error}"
        ) from error
    environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submit.startswith("s3://"):  # the SDK's other layout: code uploaded beside the model
        code = directory / "code"
        extract_tar_gz(download_s3_file(s3, submit, directory / "sourcedir.tar.gz"), code)
        environment["SAGEMAKER_SUBMIT_DIRECTORY"] = str(code)
    return environment


def _server_env(ctx: LocalContext, container_env: Mapping[str, str]) -> dict[str, str]:
    env = base_env(ctx)
    env.update(container_env)
    pythonpath = [str(_PROJECT_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in pythonpath if p)
    return env


def _wait_for_ping(server: ModelServer, http: urllib3.PoolManager, stop: threading.Event) -> None:
    deadline = time.monotonic() + server_start_timeout
    while time.monotonic() < deadline and not stop.is_set():
        if server.process.poll() is not None:
            raise DeployError(f"model server for variant {server.variant} exited: {_load_error(server)}")
        try:
            if http.request("GET", f"{server.url}/ping", timeout=1.0, retries=False).status == 200:
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    if stop.is_set():
        raise DeployError("the embedded AWS stopped while the endpoint was starting")
    raise DeployError(
        f"model server for variant {server.variant} did not answer /ping in {server_start_timeout}s"
    )


def _load_error(server: ModelServer) -> str:
    """The server's own one-line reason (see mlcycle.serving.server), else the end of its log."""
    from mlcycle.serving.server import LOAD_ERROR_MARKER

    tail = server.log_tail(40)
    for line in reversed(tail.splitlines()):
        if line.startswith(LOAD_ERROR_MARKER):
            return line.removeprefix(LOAD_ERROR_MARKER).strip()
    return tail[-800:] or f"exit code {server.process.returncode}"


def start_server(
    ctx: LocalContext,
    backend: Any,
    variant: dict[str, Any],
    directory: Path,
    *,
    http: urllib3.PoolManager,
    stop: threading.Event,
    environment: Mapping[str, str] | None = None,
) -> ModelServer:
    """Stage one production variant's model and start its server; returns once /ping answers.
    ``environment`` is laid over the container's (a transform job's ``Environment``, as SageMaker does)."""
    container = _container(backend, variant["ModelName"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    environment = {**_stage_model(ctx, container, directory), **(environment or {})}
    port = free_port()
    argv = [
        ctx.python,
        "-m",
        "mlcycle.serving.server",
        "--model-dir",
        str(directory / "model"),
        "--port",
        str(port),
    ]
    with (directory / "server.log").open("ab") as log_file:
        process = subprocess.Popen(
            argv,
            cwd=directory / "model",
            env=_server_env(ctx, environment),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so stopping it also stops anything the user's code forked
        )
    server = ModelServer(
        variant=variant["VariantName"],
        model_name=variant["ModelName"],
        port=port,
        directory=directory,
        process=process,
        weight=float(variant.get("InitialVariantWeight", 1.0)),
    )
    _wait_for_ping(server, http, stop)
    return server
