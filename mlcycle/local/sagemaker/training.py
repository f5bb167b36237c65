"""Real SageMaker training jobs in the embedded AWS (moto marks them Completed at once and runs nothing).

Training job: ``InProgress`` at creation; a background thread then builds the SageMaker container layout
under ``{work_dir}/jobs/{name}/`` (``input/data/{channel}``, ``input/config/*.json``, ``model/``,
``output/data/``, ``output/failure``, ``code/``; ``/opt/ml`` itself is never written), downloads every
channel and the ``sagemaker_submit_directory`` tarball from S3, runs ``sagemaker_program`` with the
environment and command-line arguments of the scikit-learn container's training toolkit, and uploads
``model.tar.gz`` and ``output.tar.gz`` under ``{S3OutputPath}/{job}/output/``. Exit 0 -> Completed; a
non-zero exit -> Failed with ``AlgorithmError: `` + ``output/failure`` (or the tail of stderr); a
``StopTrainingJob`` or ``MaxRuntimeInSeconds`` -> Stopped (SIGTERM, a grace period, then SIGKILL; the model
written so far is uploaded, as in AWS). Logs go to ``{root}/logs/algo-1.log`` and to CloudWatch Logs
``/aws/sagemaker/TrainingJobs``; ``MetricDefinitions`` regexes over the log fill ``FinalMetricDataList``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.local import faults
from mlcycle.local.common.processes import UserProcess, publish_logs
from mlcycle.local.common.s3files import (
    JobSetupError,
    download_s3_file,
    download_s3_prefix,
    extract_tar_gz,
    make_tar_gz,
    s3_client,
    upload_file,
)
from mlcycle.local.common.values import json_safe, utcnow
from mlcycle.local.context import LocalContext
from mlcycle.local.sagemaker.jobs import (
    FAILURE_REASON_LIMIT,
    FRAMEWORK_PREFIX,
    HOST,
    JobRun,
    JobsState,
    algorithm_error,
    base_env,
    job_root,
    jobs_state,
    start_run,
)
from mlcycle.local.sagemaker.registry_events import put_sagemaker_event

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


def decode_hyperparameter(value: str) -> Any:
    """The toolkit JSON-decodes each value (the SDK writes ``"\\"train.py\\""``) and keeps raw strings."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _env_value(value: Any) -> str:
    """How the toolkit renders a value into an environment variable."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def cmd_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """The toolkit's ``--name value`` arguments (sorted; dicts as ``k=v,k=v``)."""
    args: list[str] = []
    for name in sorted(hyperparameters):
        value = hyperparameters[name]
        if isinstance(value, Mapping):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        args += [f"--{name}" if len(name) > 1 else f"-{name}", str(value)]
    return args


#: Where SageMaker puts a training job's input channels in the container.
CONTAINER_DATA = "/opt/ml/input/data/"


class TrainingLayout:
    """The SageMaker training container layout, rooted at ``root`` instead of ``/opt/ml``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.input = root / "input"
        self.config = root / "input" / "config"
        self.data = root / "input" / "data"
        self.model = root / "model"
        self.output = root / "output"
        self.output_data = root / "output" / "data"
        self.intermediate = root / "output" / "intermediate"
        self.failure = root / "output" / "failure"
        self.code = root / "code"
        self.log = root / "logs" / f"{HOST}.log"

    def create(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        for directory in (self.config, self.data, self.model, self.output_data, self.intermediate, self.code):
            directory.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class TrainingSpec:
    """What the runner needs from a CreateTrainingJob request."""

    name: str
    arn: str
    hyperparameters: dict[str, str]
    channels: list[dict[str, Any]]
    output_path: str
    instance_type: str
    max_runtime: float | None
    metric_definitions: list[dict[str, str]]

    @classmethod
    def of(cls, job: Any) -> TrainingSpec:
        stopping = job.stopping_condition or {}
        return cls(
            name=job.training_job_name,
            arn=job.arn,
            hyperparameters=dict(job.hyper_parameters or {}),
            channels=list(job.input_data_config or []),
            output_path=job.output_data_config["S3OutputPath"].rstrip("/"),
            instance_type=(job.resource_config or {}).get("InstanceType", "ml.m5.large"),
            max_runtime=stopping.get("MaxRuntimeInSeconds"),
            metric_definitions=list((job.algorithm_specification or {}).get("MetricDefinitions") or []),
        )

    @property
    def user_hyperparameters(self) -> dict[str, Any]:
        decoded = {k: decode_hyperparameter(v) for k, v in self.hyperparameters.items()}
        return {k: v for k, v in decoded.items() if not k.startswith(FRAMEWORK_PREFIX)}

    def framework(self, name: str) -> Any:
        raw = self.hyperparameters.get(name)
        return None if raw is None else decode_hyperparameter(raw)

    @property
    def model_artifacts(self) -> str:
        return f"{self.output_path}/{self.name}/output/model.tar.gz"

    @property
    def output_artifacts(self) -> str:
        return f"{self.output_path}/{self.name}/output/output.tar.gz"


def _write_training_config(layout: TrainingLayout, spec: TrainingSpec) -> dict[str, Any]:
    """input/config/*.json as SageMaker writes them; returns the resource config."""
    resource = {
        "current_host": HOST,
        "current_instance_type": spec.instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [HOST],
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": spec.instance_type,
                "hosts": [HOST],
            }
        ],
        "network_interface_name": "eth0",
    }
    input_config = {
        channel["ChannelName"]: {
            **({"ContentType": channel["ContentType"]} if channel.get("ContentType") else {}),
            "TrainingInputMode": channel.get("InputMode", "File"),
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
        for channel in spec.channels
    }
    (layout.config / "hyperparameters.json").write_text(json.dumps(spec.hyperparameters))
    (layout.config / "resourceconfig.json").write_text(json.dumps(resource))
    (layout.config / "inputdataconfig.json").write_text(json.dumps(input_config))
    return resource


def _download_channels(s3: S3Client, layout: TrainingLayout, spec: TrainingSpec) -> None:
    for channel in spec.channels:
        name = channel["ChannelName"]
        source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
        if not source.get("S3Uri"):
            raise JobSetupError(f"channel {name!r}: only S3DataSource channels run locally")
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise JobSetupError(
                f"channel {name!r}: S3DataType {source['S3DataType']} is not supported locally"
            )
        if download_s3_prefix(s3, source["S3Uri"], layout.data / name) == 0:
            raise JobSetupError(
                f'No S3 objects found under S3 URL "{source["S3Uri"]}" given in input data source.'
            )


def _download_code(s3: S3Client, layout: TrainingLayout, spec: TrainingSpec) -> str:
    """Extract ``sagemaker_submit_directory`` into ``code/``; returns ``sagemaker_program``."""
    program, submit = spec.framework("sagemaker_program"), spec.framework("sagemaker_submit_directory")
    if not program:
        raise JobSetupError("hyperparameter sagemaker_program is required to run a training job locally")
    if isinstance(submit, str) and submit.startswith(CONTAINER_DATA):
        # A network-isolated job gets its code as an input channel (the toolkit extracts it from there).
        local = layout.data / submit.removeprefix(CONTAINER_DATA)
        if not local.is_file():
            raise JobSetupError(f"sagemaker_submit_directory {submit} is in no input channel of the job")
        extract_tar_gz(local, layout.code)
    elif isinstance(submit, str) and submit.startswith("s3://"):
        archive = download_s3_file(s3, submit, layout.root / "sourcedir.tar.gz")
        extract_tar_gz(archive, layout.code)
        archive.unlink()
    else:
        raise JobSetupError(
            "hyperparameter sagemaker_submit_directory must be an s3:// URI of a tar.gz, or its path in an "
            f"input channel ({CONTAINER_DATA}...)"
        )
    if not (layout.code / str(program)).is_file():
        raise JobSetupError(f"sagemaker_program {program!r} is not in {submit}")
    return str(program)


def _toolkit_training_env(
    layout: TrainingLayout, spec: TrainingSpec, resource: dict[str, Any]
) -> dict[str, Any]:
    """The toolkit's ``SM_TRAINING_ENV`` document (its Environment object as a dict)."""
    program = str(spec.framework("sagemaker_program"))
    return {
        "additional_framework_parameters": {},
        "channel_input_dirs": {c["ChannelName"]: str(layout.data / c["ChannelName"]) for c in spec.channels},
        "current_host": HOST,
        "current_instance_type": spec.instance_type,
        "hosts": [HOST],
        "hyperparameters": spec.user_hyperparameters,
        "input_config_dir": str(layout.config),
        "input_data_config": json.loads((layout.config / "inputdataconfig.json").read_text()),
        "input_dir": str(layout.input),
        "is_master": True,
        "job_name": spec.name,
        "log_level": int(spec.framework("sagemaker_container_log_level") or logging.INFO),
        "master_hostname": HOST,
        "model_dir": str(layout.model),
        "module_dir": str(spec.framework("sagemaker_submit_directory")),
        "module_name": program.removesuffix(".py"),
        "network_interface_name": "eth0",
        "num_cpus": os.cpu_count() or 1,
        "num_gpus": 0,
        "output_data_dir": str(layout.output_data),
        "output_dir": str(layout.output),
        "output_intermediate_dir": str(layout.intermediate),
        "resource_config": resource,
        "user_entry_point": program,
    }


def training_environment(
    ctx: LocalContext, layout: TrainingLayout, spec: TrainingSpec, resource: dict[str, Any]
) -> dict[str, str]:
    """The SM_* variables of the sagemaker-training toolkit, pointing into the local layout."""
    training_env = _toolkit_training_env(layout, spec, resource)
    hps, program, channels = (
        spec.user_hyperparameters,
        training_env["user_entry_point"],
        training_env["channel_input_dirs"],
    )
    sm: dict[str, Any] = {
        "hosts": [HOST],
        "network_interface_name": "eth0",
        "hps": hps,
        "user_entry_point": program,
        "framework_params": {},
        "resource_config": resource,
        "input_data_config": training_env["input_data_config"],
        "output_data_dir": str(layout.output_data),
        "channels": sorted(channels),
        "current_host": HOST,
        "current_instance_type": spec.instance_type,
        "module_name": training_env["module_name"],
        "log_level": training_env["log_level"],
        "framework_module": "sagemaker_sklearn_container.training:main",
        "input_dir": str(layout.input),
        "input_config_dir": str(layout.config),
        "output_dir": str(layout.output),
        "num_cpus": training_env["num_cpus"],
        "num_gpus": 0,
        "num_neurons": 0,
        "model_dir": str(layout.model),
        "module_dir": training_env["module_dir"],
        "training_env": training_env,
        "user_args": cmd_args(hps),
        "output_intermediate_dir": str(layout.intermediate),
    }
    sm.update({f"channel_{name}": path for name, path in channels.items()})
    sm.update({f"hp_{name}": value for name, value in hps.items()})
    env = base_env(ctx)
    env.update({f"SM_{key.upper()}": _env_value(value) for key, value in sm.items()})
    env.update(
        TRAINING_JOB_NAME=spec.name,
        TRAINING_JOB_ARN=spec.arn,
        # The toolkit (if a script imports it) uses this instead of /opt/ml when /opt/ml does not exist.
        SAGEMAKER_BASE_DIR=str(layout.root),
        PYTHONPATH=os.pathsep.join(filter(None, [str(layout.code), os.environ.get("PYTHONPATH", "")])),
    )
    return env


def _entry_argv(ctx: LocalContext, program: str, args: list[str]) -> list[str]:
    """How the toolkit runs an entry point: python scripts, shell scripts, or a module name."""
    if program.endswith(".py"):
        return [ctx.python, program, *args]
    if program.endswith(".sh"):
        return ["/bin/sh", program, *args]
    return [ctx.python, "-m", program, *args]


def _set_secondary_status(job: Any, status: str, message: str, *, final: bool = False) -> None:
    """Close the current transition and open the next. Lists are replaced, never mutated in place, because
    describe_training_job may be serializing them on another thread."""
    now = utcnow()
    transitions = [dict(t) for t in job.secondary_status_transitions or []]
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = now
    transitions.append(
        {"Status": status, "StartTime": now, "StatusMessage": message, **({"EndTime": now} if final else {})}
    )
    job.secondary_status_transitions = transitions
    job.secondary_status = status
    job.last_modified_time = now


def _final_metrics(
    definitions: list[dict[str, str]], events: list[tuple[int, str]]
) -> list[dict[str, Any]] | None:
    """SageMaker's MetricDefinitions: the last match of each regex in the log is the final value."""
    metrics = []
    for definition in definitions:
        pattern = re.compile(definition["Regex"])
        for ms, line in reversed(events):
            match = pattern.search(line)
            if match:
                with contextlib.suppress(ValueError, IndexError):
                    value = float(match.group(1))
                    stamp = datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)
                    metrics.append({"MetricName": definition["Name"], "Value": value, "Timestamp": stamp})
                break
    return metrics or None


def _finish_training(
    state: JobsState, job: Any, status: str, secondary: str, reason: str | None = None
) -> None:
    end = utcnow()
    start = job.training_start_time or job.creation_time
    job.failure_reason = reason[:FAILURE_REASON_LIMIT] if reason else None
    job.training_end_time = end
    job.training_time_in_seconds = job.billable_time_in_seconds = max(1, int((end - start).total_seconds()))
    _set_secondary_status(job, secondary, f"Training job {secondary.lower()}", final=True)
    job.training_job_status = status
    _emit_training_state(state, job)


def _upload_training_outputs(s3: S3Client, layout: TrainingLayout, spec: TrainingSpec, job: Any) -> None:
    make_tar_gz(layout.model, layout.root / "model.tar.gz")
    make_tar_gz(layout.output_data, layout.root / "output.tar.gz")
    upload_file(s3, layout.root / "model.tar.gz", spec.model_artifacts)
    upload_file(s3, layout.root / "output.tar.gz", spec.output_artifacts)
    job.model_artifacts = {"S3ModelArtifacts": spec.model_artifacts}


def _run_training(state: JobsState, job: Any, run: JobRun) -> None:
    """The training job's thread: layout, download, run, upload, final status."""
    spec, layout = TrainingSpec.of(job), TrainingLayout(run.root)
    try:
        _train(state, job, run, spec, layout)
    except JobSetupError as error:
        _finish_training(state, job, "Failed", "Failed", f"ClientError: {error}")
    except Exception as error:
        log.exception("training job %s crashed in the local runner", spec.name)
        _finish_training(state, job, "Failed", "Failed", f"InternalServerError: {error}")


def _train(state: JobsState, job: Any, run: JobRun, spec: TrainingSpec, layout: TrainingLayout) -> None:
    ctx = state.ctx
    layout.create()
    job.training_start_time = utcnow()
    _set_secondary_status(job, "Downloading", "Downloading input data")
    s3 = s3_client(ctx)
    resource = _write_training_config(layout, spec)
    _download_channels(s3, layout, spec)
    program = _download_code(s3, layout, spec)
    if run.stop.is_set():
        _finish_training(state, job, "Stopped", "Stopped")
        return
    _set_secondary_status(job, "Training", "Training image download completed. Training in progress.")
    process = UserProcess(
        argv=_entry_argv(ctx, program, cmd_args(spec.user_hyperparameters)),
        cwd=layout.code,
        env=training_environment(ctx, layout, spec, resource),
        log_path=layout.log,
        max_runtime=spec.max_runtime,
    )
    result = process.run(run.stop)
    # AWS streams logs while the job runs: they must be there before anyone sees a final status.
    publish_logs(
        ctx, "/aws/sagemaker/TrainingJobs", f"{spec.name}/{HOST}-{int(time.time())}", result.log_events
    )
    job.final_metric_data_list = _final_metrics(spec.metric_definitions, result.log_events)
    if result.ended_by == "exit" and result.exit_code != 0:
        _finish_training(state, job, "Failed", "Failed", algorithm_error(layout.failure, result))
        return
    _set_secondary_status(job, "Uploading", "Uploading generated training model")
    _upload_training_outputs(s3, layout, spec, job)  # a stopped job keeps what it saved, as in AWS
    if result.ended_by == "timeout":
        reason = f"MaxRuntimeExceeded: the job ran longer than MaxRuntimeInSeconds={spec.max_runtime}"
        _finish_training(state, job, "Stopped", "MaxRuntimeExceeded", reason)
    elif result.ended_by == "stop":
        _finish_training(state, job, "Stopped", "Stopped")
    else:
        _finish_training(state, job, "Completed", "Completed")


def _reset_training_job(job: Any, metric_definitions: list[dict[str, str]]) -> None:
    """Undo moto's instant completion. Every attribute the runner sets later exists from here on, because
    describe iterates the job's ``__dict__`` on another thread and a new key would break that iteration."""
    specification = {k: v for k, v in job.algorithm_specification.items() if k != "MetricDefinitions"}
    if metric_definitions:  # moto invents a definition; AWS echoes the request's
        specification["MetricDefinitions"] = metric_definitions
    job.algorithm_specification = specification
    job.training_job_status = "InProgress"
    job.secondary_status_transitions = []
    _set_secondary_status(job, "Starting", "Launching requested ML instances")
    job.model_artifacts = None
    job.final_metric_data_list = None
    job.training_start_time = None
    job.training_end_time = None
    job.failure_reason = None
    job.training_time_in_seconds = None
    job.billable_time_in_seconds = None


def create_training_job_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_training_job(self: Any, **kwargs: Any) -> Any:
        from moto.sagemaker.exceptions import ValidationError

        state = jobs_state()
        name = kwargs["training_job_name"]
        if name in self.training_jobs:
            raise ValidationError(
                message=f"Training job names must be unique within an AWS account and region, "
                f"and a training job with this name already exists ({name})"
            )
        metric_definitions = list(
            (kwargs.get("algorithm_specification") or {}).get("MetricDefinitions") or []
        )
        job = original(self, **kwargs)
        _reset_training_job(job, metric_definitions)
        _emit_training_state(state, job)
        run = JobRun("training", name, job_root(state, "training", name))
        start_run(state, run, lambda: _run_training(state, job, run))
        return job

    return create_training_job


def restart_training_job(state: JobsState, job: Any) -> None:
    """Run again a job that a restart of the embedded AWS interrupted, from its beginning in a clean
    directory (as SageMaker restarts a job whose instance was lost); one that was stopping ends Stopped."""
    if job.training_job_status == "Stopping":
        _finish_training(state, job, "Stopped", "Stopped")
        return
    _reset_training_job(job, list(job.algorithm_specification.get("MetricDefinitions") or []))
    run = JobRun("training", job.training_job_name, job_root(state, "training", job.training_job_name))
    shutil.rmtree(run.root, ignore_errors=True)
    start_run(state, run, lambda: _run_training(state, job, run))


def stop_training_job_patch(self: Any, training_job_name: str) -> None:
    """StopTrainingJob (moto has none): Stopping now, Stopped when the process is gone."""
    from moto.sagemaker.exceptions import ValidationError

    job = self.training_jobs.get(training_job_name)
    if job is None:
        arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:training-job/{training_job_name}"
        raise ValidationError(message=f"Could not find training job '{arn}'.")
    if job.training_job_status != "InProgress":
        raise ValidationError(
            message="The request was rejected because the training job is in status "
            f"{job.training_job_status}."
        )
    job.training_job_status = "Stopping"
    _set_secondary_status(job, "Stopping", "Stopping the training job")
    run = jobs_state().runs.get(("training", training_job_name))
    if run is not None:
        run.stop.set()


def stop_training_job_response_patch(self: Any) -> Any:
    from moto.core.responses import EmptyResult

    self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
    return EmptyResult()


def _emit_training_state(state: JobsState, job: Any) -> None:
    """AWS's ``SageMaker Training Job State Change`` on each primary status (detail ~ DescribeTrainingJob)."""
    try:
        detail = json_safe(job.response_object)
        put_sagemaker_event(state, "SageMaker Training Job State Change", detail, [job.arn])
    except Exception as error:  # an event must never break the job; its loss is kept where it is seen
        faults.record(f"SageMaker Training Job State Change of {job.arn} was not put", error, state.ctx)
