"""Real SageMaker processing jobs in the embedded AWS.

Processing job: inputs are downloaded, the entry point runs, outputs are uploaded. Container paths are
*rewritten* rather than mapped by environment: every ``/opt/ml/...`` path (and any other absolute
``LocalPath``) in ``ContainerEntrypoint``, ``ContainerArguments`` and ``Environment`` is replaced by the same
path under ``{work_dir}/processing-jobs/{name}/`` (``/opt/ml/processing/input`` becomes
``{root}/processing/input``), because scripts take those paths as arguments and cannot know about a
local root. A leading ``python`` / ``python3`` in the entry point becomes ``ctx.python``. Images are never
run: an entry point is required.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.local.common.processes import ProcessResult, UserProcess, publish_logs
from mlcycle.local.common.s3files import JobSetupError, download_s3_prefix, s3_client, upload_tree
from mlcycle.local.common.values import utcnow
from mlcycle.local.context import LocalContext
from mlcycle.local.sagemaker.jobs import (
    FAILURE_REASON_LIMIT,
    HOST,
    PYTHON,
    JobRun,
    JobsState,
    algorithm_error,
    base_env,
    job_root,
    jobs_state,
    start_run,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PathRewriter:
    """Container paths -> local paths under the job root (see the module docstring for why)."""

    root: Path
    extra: tuple[str, ...] = ()  # absolute LocalPaths outside /opt/ml

    def local(self, container_path: str) -> Path:
        path = container_path.rstrip("/")
        if path == "/opt/ml":
            return self.root
        if path.startswith("/opt/ml/"):
            return self.root / path.removeprefix("/opt/ml/")
        return self.root / "fs" / path.lstrip("/")

    def text(self, value: str) -> str:
        """Rewrite every container path inside an argument (``--x=/opt/ml/a`` too), in one pass."""
        prefixes = sorted({"/opt/ml", *self.extra}, key=len, reverse=True)
        alternatives = "|".join(re.escape(p) for p in prefixes)
        pattern = rf"(?<![\w./-])({alternatives})(?=/|$|[\s,;:=])"
        return re.sub(pattern, lambda match: str(self.local(match.group(1))), value)


@dataclass(frozen=True)
class ProcessingSpec:
    name: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    entrypoint: list[str]
    arguments: list[str]
    environment: dict[str, str]
    max_runtime: float | None

    @classmethod
    def of(cls, job: Any) -> ProcessingSpec:
        app = job.app_specification or {}
        return cls(
            name=job.processing_job_name,
            inputs=list(job.processing_inputs or []),
            outputs=list((job.processing_output_config or {}).get("Outputs") or []),
            entrypoint=list(app.get("ContainerEntrypoint") or []),
            arguments=list(app.get("ContainerArguments") or []),
            environment=dict(job.environment or {}),
            max_runtime=(job.stopping_condition or {}).get("MaxRuntimeInSeconds"),
        )

    def rewriter(self, root: Path) -> PathRewriter:
        paths = [i["S3Input"]["LocalPath"] for i in self.inputs if "S3Input" in i]
        paths += [o["S3Output"]["LocalPath"] for o in self.outputs if "S3Output" in o]
        return PathRewriter(root, tuple(p.rstrip("/") for p in paths if not p.startswith("/opt/ml")))


def _prepare_processing(s3: S3Client, spec: ProcessingSpec, paths: PathRewriter) -> None:
    shutil.rmtree(paths.root, ignore_errors=True)
    (paths.root / "config").mkdir(parents=True)
    (paths.root / "output").mkdir(parents=True)
    for item in spec.inputs:
        source = item.get("S3Input")
        if source is None:
            raise JobSetupError(f"processing input {item.get('InputName')!r}: only S3Input runs locally")
        if download_s3_prefix(s3, source["S3Uri"], paths.local(source["LocalPath"])) == 0:
            raise JobSetupError(f'No S3 objects found under S3 URL "{source["S3Uri"]}"')
    for item in spec.outputs:
        paths.local(item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
    config = {
        "ProcessingJobName": spec.name,
        "ProcessingInputs": spec.inputs,
        "ProcessingOutputConfig": {"Outputs": spec.outputs},
    }
    (paths.root / "config" / "processingjobconfig.json").write_text(json.dumps(config, default=str))
    (paths.root / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": HOST, "hosts": [HOST]})
    )


def _processing_argv(ctx: LocalContext, spec: ProcessingSpec, paths: PathRewriter) -> list[str]:
    if not spec.entrypoint:
        raise JobSetupError("AppSpecification.ContainerEntrypoint is required locally (images are not run)")
    argv = [paths.text(token) for token in [*spec.entrypoint, *spec.arguments]]
    if PYTHON.match(argv[0]):
        argv[0] = ctx.python
    return argv


def _finish_processing(
    job: Any, status: str, reason: str | None = None, exit_message: str | None = None
) -> None:
    now = utcnow()
    job.failure_reason = reason[:FAILURE_REASON_LIMIT] if reason else None
    job.exit_message = exit_message
    job.processing_end_time = now
    job.last_modified_time = now
    job.processing_job_status = status


def _run_processing(state: JobsState, job: Any, run: JobRun) -> None:
    """The processing job's thread: inputs, run, outputs, final status."""
    spec = ProcessingSpec.of(job)
    paths = spec.rewriter(run.root)
    try:
        s3 = s3_client(state.ctx)
        _prepare_processing(s3, spec, paths)
        env = base_env(state.ctx)
        env.update({key: paths.text(value) for key, value in spec.environment.items()})
        argv = _processing_argv(state.ctx, spec, paths)
        log_path = run.root / "logs" / f"{HOST}.log"
        result = UserProcess(argv, paths.root, env, log_path, spec.max_runtime).run(run.stop)
        stream = f"{spec.name}/{HOST}-{int(time.time())}"  # before the final status, as for training
        publish_logs(state.ctx, "/aws/sagemaker/ProcessingJobs", stream, result.log_events)
        _conclude_processing(s3, job, spec, paths, result)
    except JobSetupError as error:
        _finish_processing(job, "Failed", f"ClientError: {error}")
    except Exception as error:
        log.exception("processing job %s crashed in the local runner", spec.name)
        _finish_processing(job, "Failed", f"InternalServerError: {error}")


def _conclude_processing(
    s3: S3Client, job: Any, spec: ProcessingSpec, paths: PathRewriter, result: ProcessResult
) -> None:
    message_file = paths.root / "output" / "message"
    message = (
        message_file.read_text(errors="replace")[:FAILURE_REASON_LIMIT] if message_file.is_file() else None
    )
    if result.ended_by == "exit" and result.exit_code != 0:
        _finish_processing(job, "Failed", algorithm_error(paths.root / "output" / "failure", result), message)
        return
    for item in spec.outputs:
        output = item["S3Output"]
        upload_tree(s3, paths.local(output["LocalPath"]), output["S3Uri"])
    if result.ended_by == "timeout":
        reason = f"MaxRuntimeExceeded: the job ran longer than MaxRuntimeInSeconds={spec.max_runtime}"
        _finish_processing(job, "Stopped", reason, message)
    else:
        _finish_processing(job, "Stopped" if result.ended_by == "stop" else "Completed", None, message)


def create_processing_job_response_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_processing_job(self: Any) -> Any:
        request = jobs_state().request
        request.environment = self._get_param("Environment")
        try:
            return original(self)
        finally:
            request.environment = None

    return create_processing_job


def create_processing_job_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_processing_job(self: Any, **kwargs: Any) -> Any:
        state = jobs_state()
        job = original(self, **kwargs)
        job.processing_job_status = "InProgress"
        job.processing_start_time = utcnow()
        job.processing_end_time = job.failure_reason = job.exit_message = None
        job.environment = getattr(state.request, "environment", None)
        run = JobRun(
            "processing", job.processing_job_name, job_root(state, "processing", job.processing_job_name)
        )
        start_run(state, run, lambda: _run_processing(state, job, run))
        return job

    return create_processing_job


def restart_processing_job(state: JobsState, job: Any) -> None:
    """Run again a job that a restart of the embedded AWS interrupted, from its beginning in a clean
    directory; one that was stopping ends Stopped."""
    name = job.processing_job_name
    if job.processing_job_status == "Stopping":
        job.processing_job_status, job.processing_end_time = "Stopped", utcnow()
        return
    job.processing_start_time = utcnow()
    job.processing_end_time = job.failure_reason = job.exit_message = None
    run = JobRun("processing", name, job_root(state, "processing", name))
    shutil.rmtree(run.root, ignore_errors=True)
    start_run(state, run, lambda: _run_processing(state, job, run))


def stop_processing_job_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    def stop_processing_job(self: Any, processing_job_name: str) -> None:
        job = self.processing_jobs.get(processing_job_name)
        status = job.processing_job_status if job is not None else None
        original(self, processing_job_name)  # raises for an unknown job; sets Stopped
        if status == "InProgress":
            job.processing_job_status = "Stopping"
            run = jobs_state().runs.get(("processing", processing_job_name))
            if run is not None:
                run.stop.set()
        elif job is not None:
            job.processing_job_status = status  # a finished job keeps its status

    return stop_processing_job
