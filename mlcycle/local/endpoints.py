"""Real SageMaker endpoints in the embedded AWS: local model servers, InvokeEndpoint, data capture.

moto makes an endpoint InService at once, has no UpdateEndpoint, and answers InvokeEndpoint with a canned
body. Here, on moto's SageMaker backend (so boto3, CloudFormation and Step Functions callers all count):

* ``create_endpoint``: ``Creating``; a thread starts one ``python -m mlcycle.serving.server`` per
  production variant (endpoint config -> model -> ``PrimaryContainer.ModelDataUrl`` + ``Environment``,
  ``model.tar.gz`` extracted under ``{work_dir}/endpoints/{endpoint}/``) on a free 127.0.0.1 port and waits
  for ``/ping``: ``InService``, or ``Failed`` with the server's own error as ``FailureReason``.
* ``update_endpoint`` (new): ``Updating``; the new config's servers start beside the old ones, traffic
  swaps, the old servers stop: ``InService``. If the new servers fail, the old ones keep serving and the
  endpoint returns to the status it had (``InService``, or ``Failed``) with ``FailureReason`` set, as AWS
  rolls back a failed update. A ``Failed`` endpoint may be updated; one in progress may not.
* ``delete_endpoint``: flushes capture and stops the servers.
* ``InvokeEndpoint`` (patched on moto's sagemaker-runtime *response* handler, because the backend method
  only receives a hash of the request): body, ``ContentType``, ``Accept`` and ``CustomAttributes`` go to
  the variant's server (by ``TargetVariant`` or by weight); its status, body and content type come back.
  A non-2xx answer becomes ``ModelError`` (424, ``OriginalStatusCode``/``OriginalMessage``), as in AWS.
* Data capture: with ``DataCaptureConfig`` each sampled invocation becomes one line of SageMaker's capture
  JSONL, buffered and written to
  ``{DestinationS3Uri}/{endpoint}/{variant}/yyyy/mm/dd/hh/{mm-ss-mmm}-{uuid}.jsonl`` every
  :data:`capture_flush_seconds`, on delete and on uninstall (tests call :func:`flush_capture`).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import urllib3

from mlcycle.local import sagemaker_jobs as jobs
from mlcycle.local.context import LocalContext
from mlcycle.local.patching import MethodPatches

log = logging.getLogger(__name__)

#: Seconds between capture flushes (read on every cycle, so tests and demos may change it at run time).
capture_flush_seconds: float = 2.0
#: How long a model server may take to answer /ping (importing scikit-learn cold takes ~5 s).
server_start_timeout: float = 120.0
#: SageMaker's invocation timeout.
invocation_timeout: float = 60.0
#: Where the project's ``mlcycle`` package lives, so the server runs from any interpreter.
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- model servers ------------------------------------------------------------------------------------


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
            jobs.terminate(self.process, grace=5.0)


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
    s3 = jobs.s3_client(ctx)
    model_dir = directory / "model"
    try:
        archive = jobs.download_s3_file(s3, container["ModelDataUrl"], directory / "model.tar.gz")
        jobs.extract_tar_gz(archive, model_dir)
    except Exception as error:
        raise DeployError(
            f"ClientError: could not download model data from {container['ModelDataUrl']}: {error}"
        ) from error
    environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submit.startswith("s3://"):  # the SDK's other layout: code uploaded beside the model
        code = directory / "code"
        jobs.extract_tar_gz(jobs.download_s3_file(s3, submit, directory / "sourcedir.tar.gz"), code)
        environment["SAGEMAKER_SUBMIT_DIRECTORY"] = str(code)
    return environment


def _server_env(ctx: LocalContext, container_env: Mapping[str, str]) -> dict[str, str]:
    env = jobs.base_env(ctx)
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
) -> ModelServer:
    """Stage one production variant's model and start its server; returns once /ping answers."""
    container = _container(backend, variant["ModelName"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    environment = _stage_model(ctx, container, directory)
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


# ---- data capture -------------------------------------------------------------------------------------


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
class CaptureBuffer:
    """Capture lines waiting for the next flush, grouped by S3 hour prefix."""

    pending: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, prefix: str, when: datetime, line: str) -> None:
        with self.lock:
            self.pending.setdefault(prefix, []).append((when, line))

    def take(self) -> dict[str, list[tuple[datetime, str]]]:
        with self.lock:
            taken, self.pending = self.pending, {}
        return taken


def capture_record(
    settings: CaptureSettings, request: Invocation, body: bytes, content_type: str, when: datetime
) -> dict[str, Any]:
    capture: dict[str, Any] = {}
    if settings.capture_input:
        capture["endpointInput"] = settings.encode(request.body, request.content_type, "INPUT")
    if settings.capture_output:
        capture["endpointOutput"] = settings.encode(body, content_type, "OUTPUT")
    metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if request.inference_id:
        metadata["inferenceId"] = request.inference_id
    return {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}


# ---- live endpoints -----------------------------------------------------------------------------------


@dataclass
class LiveEndpoint:
    """What serves one endpoint right now."""

    name: str
    config_name: str
    servers: dict[str, ModelServer]
    capture: CaptureSettings | None

    def pick(self, target_variant: str | None) -> ModelServer | None:
        if target_variant:
            return self.servers.get(target_variant)
        variants = list(self.servers.values())
        weights = [max(s.weight, 0.0) for s in variants]
        return (
            random.choices(variants, weights=weights if sum(weights) > 0 else None)[0] if variants else None
        )

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@dataclass
class _Installed:
    ctx: LocalContext
    patches: MethodPatches
    http: urllib3.PoolManager = field(default_factory=lambda: urllib3.PoolManager(maxsize=16))
    live: dict[tuple[str, str, str], LiveEndpoint] = field(default_factory=dict)
    #: Endpoints being created or updated: a delete during that time tells the thread to discard its work.
    generations: dict[tuple[str, str, str], int] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    buffer: CaptureBuffer = field(default_factory=CaptureBuffer)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class _Slot:
    current: _Installed | None = None


def _require() -> _Installed:
    if _Slot.current is None:
        raise RuntimeError("mlcycle.local.endpoints is not installed")
    return _Slot.current


def _key(backend: Any, name: str) -> tuple[str, str, str]:
    return (backend.account_id, backend.region_name, name)


def _deploy(state: _Installed, backend: Any, endpoint_name: str, config: Any) -> LiveEndpoint:
    """Start a server for every production variant of ``config``; all or nothing."""
    servers: dict[str, ModelServer] = {}
    stamp = f"{config.endpoint_config_name}-{int(time.time() * 1000)}"
    try:
        for variant in config.production_variants:
            directory = state.ctx.work_dir / "endpoints" / endpoint_name / stamp / variant["VariantName"]
            servers[variant["VariantName"]] = start_server(
                state.ctx, backend, variant, directory, http=state.http, stop=state.stopping
            )
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return LiveEndpoint(
        endpoint_name, config.endpoint_config_name, servers, CaptureSettings.of(config.data_capture_config)
    )


def _capture_summary(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """DescribeEndpoint's DataCaptureConfigSummary (moto stores the config's request shape instead)."""
    settings = CaptureSettings.of(config)
    if not config:
        return None
    return {
        "EnableCapture": settings is not None,
        "CaptureStatus": "Started" if settings is not None else "Stopped",
        "CurrentSamplingPercentage": int(config.get("InitialSamplingPercentage", 100)),
        "DestinationS3Uri": config.get("DestinationS3Uri", ""),
        **({"KmsKeyId": config["KmsKeyId"]} if config.get("KmsKeyId") else {}),
    }


def _apply_config(endpoint: Any, config: Any) -> None:
    endpoint.endpoint_config_name = config.endpoint_config_name
    endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
    endpoint.data_capture_config = _capture_summary(config.data_capture_config)
    endpoint.last_modified_time = jobs.utcnow()


def _rollout(
    state: _Installed, backend: Any, endpoint: Any, config: Any, *, generation: int, fallback: str
) -> None:
    """The create/update thread: start the new servers, then swap them in, or fall back to ``fallback``
    (``Failed`` for a create; an update returns to the status it started from, old servers still serving)."""
    key = _key(backend, endpoint.endpoint_name)
    try:
        new = _deploy(state, backend, endpoint.endpoint_name, config)
    except Exception as error:
        reason = str(error) if isinstance(error, DeployError) else f"InternalServerError: {error}"
        if not isinstance(error, DeployError):
            log.exception("deploying endpoint %s failed", endpoint.endpoint_name)
        with state.lock:
            if state.generations.get(key) == generation:
                endpoint.failure_reason = reason[: jobs.FAILURE_REASON_LIMIT]
                endpoint.endpoint_status = fallback
                endpoint.last_modified_time = jobs.utcnow()
        return
    old: LiveEndpoint | None = new
    with state.lock:
        if state.generations.get(key) == generation and not state.stopping.is_set():  # not deleted meanwhile
            old = state.live.get(key)
            state.live[key] = new
            _apply_config(endpoint, config)
            endpoint.failure_reason = None
            endpoint.endpoint_status = "InService"
    if old is not None:
        old.stop()


def _start_rollout(state: _Installed, backend: Any, endpoint: Any, config: Any, fallback: str) -> None:
    key = _key(backend, endpoint.endpoint_name)
    with state.lock:
        generation = state.generations[key] = state.generations.get(key, 0) + 1
        thread = threading.Thread(
            target=_rollout,
            args=(state, backend, endpoint, config),
            kwargs={"generation": generation, "fallback": fallback},
            name=f"endpoint-{endpoint.endpoint_name}",
            daemon=True,
        )
        state.threads = [t for t in state.threads if t.is_alive()] + [thread]
    thread.start()


def _create_endpoint(original: Any) -> Any:
    def create_endpoint(self: Any, **kwargs: Any) -> Any:
        state = _require()
        from moto.sagemaker.exceptions import ValidationError

        if kwargs.get("endpoint_name") in self.endpoints:
            name = kwargs["endpoint_name"]
            arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:endpoint/{name.lower()}"
            raise ValidationError(message=f'Cannot create already existing endpoint "{arn}".')
        endpoint = original(self, **kwargs)
        config = self.endpoint_configs[endpoint.endpoint_config_name]
        endpoint.data_capture_config = _capture_summary(config.data_capture_config)
        endpoint.endpoint_status = "Creating"
        _start_rollout(state, self, endpoint, config, fallback="Failed")
        return endpoint

    return create_endpoint


def _update_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, **_: Any) -> str:
    """UpdateEndpoint (moto has none): Updating now; the new servers replace the old ones when ready."""
    from moto.sagemaker.exceptions import ValidationError

    state = _require()
    endpoint = self.endpoints.get(endpoint_name)
    arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:endpoint/{endpoint_name.lower()}"
    if endpoint is None:
        raise ValidationError(message=f"Could not find endpoint '{arn}'.")
    config = self.endpoint_configs.get(endpoint_config_name)
    if config is None:
        config_arn = (
            f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:endpoint-config/{endpoint_config_name}"
        )
        raise ValidationError(message=f"Could not find endpoint configuration '{config_arn}'.")
    previous = endpoint.endpoint_status
    if previous not in ("InService", "Failed"):
        raise ValidationError(message=f'Cannot update in-progress endpoint "{arn}".')
    endpoint.endpoint_status = "Updating"
    endpoint.last_modified_time = jobs.utcnow()
    _start_rollout(state, self, endpoint, config, fallback=previous)
    return str(endpoint.arn)


def _update_endpoint_response(self: Any) -> Any:
    from moto.core.responses import ActionResult

    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
    )
    return ActionResult({"EndpointArn": arn})


def _delete_endpoint(original: Any) -> Any:
    def delete_endpoint(self: Any, endpoint_name: str) -> None:
        state = _require()
        original(self, endpoint_name)  # raises for an unknown endpoint
        key = _key(self, endpoint_name)
        with state.lock:
            live = state.live.pop(key, None)
            state.generations[key] = state.generations.get(key, 0) + 1  # orphan any rollout in flight
        flush_capture()
        if live is not None:
            live.stop()

    return delete_endpoint


def endpoint_servers(
    endpoint_name: str, account: str | None = None, region: str | None = None
) -> list[ModelServer]:
    """The servers behind an endpoint (tests, diagnostics); empty when it is not in service."""
    state = _require()
    key = (account or state.ctx.account, region or state.ctx.region, endpoint_name)
    with state.lock:
        live = state.live.get(key)
        return list(live.servers.values()) if live else []


# ---- InvokeEndpoint -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    endpoint: str
    body: bytes
    content_type: str
    accept: str
    custom_attributes: str | None
    inference_id: str | None
    target_variant: str | None


_Response = tuple[int, dict[str, str], bytes | str]


def _error(status: int, code: str, message: str, **extra: Any) -> _Response:
    return (
        status,
        {"Content-Type": "application/json", "x-amzn-ErrorType": code},
        json.dumps({"message": message, **extra}),
    )


def invoke(account: str, region: str, request: Invocation) -> _Response:
    """Forward one InvokeEndpoint to the endpoint's server; capture it when configured."""
    state = _require()
    with state.lock:
        live = state.live.get((account, region, request.endpoint))
    if live is None:
        return _error(400, "ValidationError", f"Endpoint {request.endpoint} of account {account} not found.")
    server = live.pick(request.target_variant)
    if server is None:
        return _error(
            400,
            "ValidationError",
            f"Variant {request.target_variant} not found for endpoint {request.endpoint}.",
        )
    headers = {"Content-Type": request.content_type, "Accept": request.accept}
    if request.custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = request.custom_attributes
    if request.inference_id:
        headers["X-Amzn-SageMaker-Inference-Id"] = request.inference_id
    try:
        answer = state.http.request(
            "POST",
            f"{server.url}/invocations",
            body=request.body,
            headers=headers,
            timeout=invocation_timeout,
            retries=False,
        )
    except urllib3.exceptions.HTTPError as error:
        message = f"model server for variant {server.variant} did not answer ({error}); see {server.log_path}"
        return _error(424, "ModelError", message, OriginalStatusCode=502, OriginalMessage=str(error))
    return _answer(state, live, server, request, answer)


def _answer(
    state: _Installed,
    live: LiveEndpoint,
    server: ModelServer,
    request: Invocation,
    answer: urllib3.BaseHTTPResponse,
) -> _Response:
    body = answer.data
    content_type = answer.headers.get("Content-Type", "application/octet-stream")
    if answer.status >= 400:
        kind = "client" if answer.status < 500 else "server"
        text = body.decode("utf-8", "replace")
        message = (
            f'Received {kind} error ({answer.status}) from {server.variant} with message "{text}". '
            f"See {server.log_path} for more information."
        )
        return _error(424, "ModelError", message, OriginalStatusCode=answer.status, OriginalMessage=text)
    capture = live.capture
    if capture is not None and random.uniform(0, 100) < capture.sampling_percentage:
        when = datetime.now(UTC)
        record = capture_record(capture, request, body, content_type, when)
        prefix = f"{capture.destination}/{live.name}/{server.variant}/{when:%Y/%m/%d/%H}"
        state.buffer.add(prefix, when, json.dumps(record, separators=(",", ":")))
    headers = {"Content-Type": content_type, "x-Amzn-Invoked-Production-Variant": server.variant}
    attributes = answer.headers.get("X-Amzn-SageMaker-Custom-Attributes")
    if attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
    return 200, headers, body


def _invoke_endpoint_response(self: Any) -> _Response:
    """moto's InvokeEndpoint handler, replaced: the real request goes to the real server."""
    path = self.path.split("/")
    headers = self.headers
    body = self.raw_body if isinstance(self.raw_body, bytes) else str(self.raw_body or "").encode()
    request = Invocation(
        endpoint=unquote(path[2]) if len(path) > 2 else "",
        body=body,
        content_type=headers.get("Content-Type", "application/octet-stream"),
        accept=headers.get("Accept", "*/*"),
        custom_attributes=headers.get("X-Amzn-SageMaker-Custom-Attributes"),
        inference_id=headers.get("X-Amzn-SageMaker-Inference-Id"),
        target_variant=headers.get("X-Amzn-SageMaker-Target-Variant"),
    )
    status, response_headers, response_body = invoke(self.current_account, self.region, request)
    # moto's dispatcher takes the HTTP status from this header, not from the tuple.
    return status, {**response_headers, "status": str(status)}, response_body


# ---- flushing -----------------------------------------------------------------------------------------


def flush_capture() -> int:
    """Write every buffered capture record to S3 now; returns the number of files written."""
    state = _Slot.current
    if state is None:
        return 0
    written = 0
    s3 = jobs.s3_client(state.ctx)
    for prefix, entries in state.buffer.take().items():
        first = min(when for when, _ in entries)
        key_uri = f"{prefix}/{first:%M-%S}-{first.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
        bucket, key = jobs.split_s3_uri(key_uri)
        body = "".join(line + "\n" for _, line in sorted(entries, key=lambda entry: entry[0]))
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/jsonlines")
            written += 1
        except Exception:  # a missing bucket must not take the endpoint down; AWS drops them too
            log.warning("could not write data capture to %s", key_uri, exc_info=True)
    return written


def _flush_loop(state: _Installed) -> None:
    while not state.stopping.wait(capture_flush_seconds):
        try:
            flush_capture()
        except Exception:
            log.warning("data capture flush failed", exc_info=True)


# ---- install / uninstall ------------------------------------------------------------------------------


def install(ctx: LocalContext) -> None:
    """Patch moto so endpoints are served by real local model servers."""
    from moto.sagemaker.models import SageMakerModelBackend as Backend
    from moto.sagemaker.responses import SageMakerResponse as Response
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse as Runtime

    uninstall()
    patches = MethodPatches()
    state = _Slot.current = _Installed(ctx=ctx, patches=patches)
    patches.replace(Backend, "create_endpoint", _create_endpoint(Backend.create_endpoint))
    patches.replace(Backend, "delete_endpoint", _delete_endpoint(Backend.delete_endpoint))
    patches.replace(Backend, "update_endpoint", _update_endpoint)
    patches.replace(Response, "update_endpoint", _update_endpoint_response)
    patches.replace(Runtime, "invoke_endpoint", _invoke_endpoint_response)
    # Keep request bodies as bytes: moto would decode them as UTF-8 and fail on NPY or other binary input.
    patches.replace(Runtime, "use_raw_body", True)
    threading.Thread(target=_flush_loop, args=(state,), name="endpoint-capture-flush", daemon=True).start()


def uninstall() -> None:
    """Stop every model server and rollout, flush capture, restore moto."""
    state = _Slot.current
    if state is None:
        return
    state.stopping.set()
    with state.lock:
        threads, state.threads = state.threads, []
    for thread in threads:
        thread.join(timeout=server_start_timeout)
    flush_capture()
    with state.lock:
        live, state.live = list(state.live.values()), {}
    for endpoint in live:
        endpoint.stop()
    state.patches.restore()
    state.http.clear()
    _Slot.current = None
