"""Start and stop the embedded AWS in this process: moto's server plus our patches."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcycle import aws
from mlcycle.local import awslambda, cloudwatch, context, events, persistence, s3, sagemaker, stepfunctions
from mlcycle.local.common import fault_injection
from mlcycle.local.context import LocalContext

#: Each service's patches, installed in this order and uninstalled in the reverse one: Lambda's before
#: EventBridge's, so that no function still running puts events to a bus whose delivery is moto's again.
_PATCHES = (fault_injection, s3, stepfunctions, events, awslambda, sagemaker, cloudwatch)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _export_environment(ctx: LocalContext) -> dict[str, str | None]:
    """Point every AWS client of this process (our handlers included) at the embedded AWS; return what
    the variables held before, for :meth:`EmbeddedAws.stop` to put back.

    moto's Step Functions service integrations call ``localhost:MOTO_PORT``, which ThreadedMotoServer
    does not set, so it is exported here before anything runs.
    """
    values = {
        "MOTO_PORT": str(ctx.port),
        "AWS_ENDPOINT_URL": ctx.endpoint_url,
        "AWS_DEFAULT_REGION": ctx.region,
        "AWS_REGION": ctx.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
    previous = {name: os.environ.get(name) for name in (*values, "AWS_PROFILE")}
    os.environ.update(values)
    os.environ.pop("AWS_PROFILE", None)
    return previous


def _restore_environment(previous: dict[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class EmbeddedAws:
    """A running embedded AWS; ``stop()`` ends it and every process it started."""

    ctx: LocalContext
    _server: object
    _owns_work_dir: bool = False
    _environment: dict[str, str | None] | None = None
    #: What a start from a snapshot ran again (jobs, endpoints, invocations, executions), by kind.
    resumed: dict[str, Any] | None = None

    @property
    def endpoint_url(self) -> str:
        return self.ctx.endpoint_url

    def stop(self, *, keep_state: bool = False) -> None:
        """Stop everything; with ``keep_state``, first save the state in the work directory, for the next
        :func:`start` on that directory to carry on from (``mlcycle.local.persistence``)."""
        if keep_state and self._owns_work_dir:
            raise ValueError("keep_state needs a work directory of the caller's (start(work_dir=...))")
        self._stop(keep_state=keep_state)
        if self._owns_work_dir:
            shutil.rmtree(self.ctx.work_dir, ignore_errors=True)

    def restart(self) -> dict[str, Any]:
        """Stop keeping the state and start again on the same port and work directory, in place (clients
        and holders of this object go on working); return what the start ran again, by kind."""
        ctx = self.ctx
        self._stop(keep_state=True)
        again = start(port=ctx.port, region=ctx.region, work_dir=ctx.work_dir, time_scale=ctx.time_scale)
        self.ctx, self._server, self._environment = again.ctx, again._server, again._environment
        self.resumed = again.resumed or {}
        return self.resumed

    def _stop(self, *, keep_state: bool) -> None:
        server_stopped = False

        def stop_server() -> None:
            nonlocal server_stopped
            self._server.stop()  # type: ignore[attr-defined]
            server_stopped = True

        if keep_state:
            persistence.save(self.ctx, stop_server)
        for patch in reversed(_PATCHES):
            patch.uninstall()
        context.deactivate(self.ctx)
        if not server_stopped:
            stop_server()
        _reset_backends()
        # The process goes back to the AWS it knew: no client keeps pointing at a server that is gone.
        if self._environment is not None:
            _restore_environment(self._environment)
        aws.client.cache_clear()


def _reset_backends() -> None:
    """moto keeps its state in process-wide backends: a new embedded AWS must start empty."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


def start(
    *,
    port: int | None = None,
    region: str = "us-east-1",
    work_dir: Path | None = None,
    time_scale: float = 1.0,
) -> EmbeddedAws:
    """Start moto's server on 127.0.0.1 with Step Functions execution on and our patches installed; when
    ``work_dir`` holds the state a ``stop(keep_state=True)`` saved, start from it."""
    from moto.moto_api import _internal  # noqa: F401  (registers the config API)
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    if context.running() is not None:
        raise RuntimeError(
            "an embedded AWS is already running in this process: stop it first (moto's backends are "
            "process-wide, so two would share and reset each other's state)"
        )
    port = port or free_port()
    ctx = LocalContext(
        endpoint_url=f"http://127.0.0.1:{port}",
        region=region,
        work_dir=work_dir or Path(tempfile.mkdtemp(prefix="mlcycle-local-")),
        time_scale=time_scale,
    )
    # One line per HTTP request drowns the progress the CLI prints; errors still show. moto also warns at
    # every SageMaker task that it forwards the call to the service, which is what we want it to do.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger(
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported"
    ).setLevel(logging.ERROR)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    environment = _export_environment(ctx)
    _configure_moto()
    _reset_backends()
    kept = persistence.load(ctx.work_dir)
    try:
        # Handlers cache their clients as a warm Lambda does; those of an earlier one point elsewhere.
        aws.client.cache_clear()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        context.activate(ctx)
        for patch in _PATCHES:
            patch.install(ctx)
        embedded = EmbeddedAws(
            ctx=ctx, _server=server, _owns_work_dir=work_dir is None, _environment=environment
        )
        if kept is not None:
            embedded.resumed = persistence.resume(ctx, kept)
    except BaseException:
        if kept is not None:  # a start that failed must not cost the saved state: the next one takes it
            persistence.put_back(ctx.work_dir)
        raise
    if kept is not None:
        persistence.loaded(ctx.work_dir)
    return embedded


def _configure_moto() -> None:
    """Execute state machine definitions for real (moto otherwise only records executions)."""
    from moto.core.config import default_user_config

    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    # CDK roles attach AWS managed policies (AWSLambdaBasicExecutionRole); moto knows them only if loaded.
    default_user_config["iam"] = {"load_aws_managed_policies": True}
    default_user_config.setdefault("core", {})["reset_boto3_session"] = False  # type: ignore[index]
