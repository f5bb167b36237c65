"""Real SageMaker training and processing jobs in the embedded AWS, and model-package approval events.

moto marks a training or processing job Completed the moment it is created and never runs it. The patches
here sit on moto's SageMaker *backend*, so every caller gets the same behaviour: boto3, the Step Functions
``sagemaker:createTrainingJob`` task (moto forwards it through boto3 to this server) and CloudFormation.

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

Processing job: inputs are downloaded, the entry point runs, outputs are uploaded. Container paths are
*rewritten* rather than mapped by environment: every ``/opt/ml/...`` path (and any other absolute
``LocalPath``) in ``ContainerEntrypoint``, ``ContainerArguments`` and ``Environment`` is replaced by the same
path under ``{work_dir}/processing-jobs/{name}/`` (``/opt/ml/processing/input`` becomes
``{root}/processing/input``), because scripts take those paths as arguments and cannot know about a
local root. A leading ``python`` / ``python3`` in the entry point becomes ``ctx.python``. Images are never
run: an entry point is required.

Model registry: a package created with, or updated to, a new ``ModelApprovalStatus`` puts AWS's
``SageMaker Model Package State Change`` event on the default bus (moto emits none). Training jobs also emit
``SageMaker Training Job State Change`` on each primary status change, as AWS does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from mlcycle.local.context import LocalContext
from mlcycle.local.patching import MethodPatches

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import InputLogEventTypeDef
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

HOST = "algo-1"
#: Seconds a stopped or timed-out job gets between SIGTERM and SIGKILL (AWS gives 120).
stop_grace_seconds: float = 10.0
FAILURE_REASON_LIMIT = 1024
#: Hyperparameters the SageMaker SDK adds for the framework; the toolkit keeps them out of the user's args.
_FRAMEWORK_PREFIX = "sagemaker_"
_PYTHON = re.compile(r"^(?:/usr(?:/local)?/bin/)?python(?:3(?:\.\d+)?)?$")


# ---- patching moto -------------------------------------------------------------------------------------


def utcnow() -> datetime:
    """moto's clock (naive UTC), so our timestamps sort with the ones moto writes."""
    from moto.core.utils import utcnow as moto_utcnow

    return moto_utcnow()


def json_safe(value: Any) -> Any:
    """Datetimes -> epoch milliseconds (how SageMaker events carry times), recursively."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# ---- S3 and Logs through boto3 against the embedded AWS -----------------------------------------------

_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def _client(ctx: LocalContext, service: str) -> Any:
    """One client per service: boto3 clients are thread-safe (sessions are not) and cost ~0.2 s to make."""
    key = (ctx.endpoint_url, service)
    with _clients_lock:
        if key not in _clients:
            import boto3

            _clients[key] = boto3.session.Session().client(
                service,  # type: ignore[call-overload]
                endpoint_url=ctx.endpoint_url,
                region_name=ctx.region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return _clients[key]


def s3_client(ctx: LocalContext) -> S3Client:
    client: S3Client = _client(ctx, "s3")
    return client


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def download_s3_prefix(s3: S3Client, uri: str, dest: Path) -> int:
    """Copy every object under an S3 prefix into ``dest``, keeping paths relative to the prefix.

    A URI naming one object lands as ``dest/{basename}``. Returns the number of files written.
    """
    bucket, prefix = split_s3_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            key = entry["Key"]
            relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
            if key.endswith("/") or ".." in Path(relative).parts:  # folder markers, hostile keys
                continue
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            with target.open("wb") as out:
                shutil.copyfileobj(body, out)
            count += 1
    return count


def download_s3_file(s3: S3Client, uri: str, target: Path) -> Path:
    bucket, key = split_s3_uri(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        shutil.copyfileobj(s3.get_object(Bucket=bucket, Key=key)["Body"], out)
    return target


def extract_tar_gz(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths and .. escapes


def make_tar_gz(source: Path, archive: Path) -> Path:
    """Tar the *contents* of ``source`` (``model.joblib``, ``code/...`` at the top), as SageMaker does."""
    with tarfile.open(archive, "w:gz") as tar:
        for child in sorted(source.iterdir()) if source.is_dir() else []:
            tar.add(child, arcname=child.name)
    return archive


def _upload(s3: S3Client, path: Path, uri: str) -> None:
    bucket, key = split_s3_uri(uri)
    s3.upload_file(str(path), bucket, key)


def _upload_tree(s3: S3Client, source: Path, uri: str) -> None:
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        _upload(s3, path, f"{uri.rstrip('/')}/{path.relative_to(source).as_posix()}")


class JobSetupError(Exception):
    """A job could not start (bad input, missing code): AWS reports these as ``ClientError: ...``."""


# ---- running the user's process -----------------------------------------------------------------------


@dataclass
class ProcessResult:
    exit_code: int | None
    ended_by: Literal["exit", "stop", "timeout"]
    stderr_tail: list[str]
    #: (epoch milliseconds, line) for CloudWatch Logs and metric regexes.
    log_events: list[tuple[int, str]]


@dataclass
class UserProcess:
    """One job process: its output is pumped to a log file; stop requests and a deadline end it."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    max_runtime: float | None = None
    _events: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=20_000))
    _stderr: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, stop: threading.Event) -> ProcessResult:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log_file:
            # A new session makes the whole process group killable (scripts may fork workers).
            process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            pumps = [
                threading.Thread(target=self._pump, args=(process.stdout, log_file, False), daemon=True),
                threading.Thread(target=self._pump, args=(process.stderr, log_file, True), daemon=True),
            ]
            for pump in pumps:
                pump.start()
            ended_by = self._wait(process, stop)
            # The container ends with its entry point: nothing the script forked outlives it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            for pump in pumps:
                pump.join(timeout=10)
        return ProcessResult(process.returncode, ended_by, list(self._stderr), list(self._events))

    def _pump(self, stream: IO[bytes], log_file: IO[str], is_stderr: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._lock:
                log_file.write(line + "\n")
                log_file.flush()
                self._events.append((int(time.time() * 1000), line))
                if is_stderr:
                    self._stderr.append(line)
        stream.close()

    def _wait(
        self, process: subprocess.Popen[bytes], stop: threading.Event
    ) -> Literal["exit", "stop", "timeout"]:
        deadline = time.monotonic() + self.max_runtime if self.max_runtime else None
        while process.poll() is None:
            if stop.wait(0.05):
                terminate(process)
                return "stop"
            if deadline is not None and time.monotonic() > deadline:
                terminate(process)
                return "timeout"
        return "exit"


def terminate(process: subprocess.Popen[bytes], grace: float | None = None) -> None:
    """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL it (what SageMaker does on stop)."""
    for sig, wait in (
        (signal.SIGTERM, stop_grace_seconds if grace is None else grace),
        (signal.SIGKILL, 5.0),
    ):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _publish_logs(ctx: LocalContext, group: str, stream: str, events: Sequence[tuple[int, str]]) -> None:
    """Best effort: the job's log in CloudWatch Logs, where AWS puts it."""
    logs: CloudWatchLogsClient = _client(ctx, "logs")
    try:
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        batch: list[InputLogEventTypeDef] = [{"timestamp": ms, "message": line or " "} for ms, line in events]
        for start in range(0, len(batch), 5_000):
            logs.put_log_events(
                logGroupName=group, logStreamName=stream, logEvents=batch[start : start + 5_000]
            )
    except Exception:  # logs are a convenience: never fail a job over them
        log.warning("could not publish %s/%s to CloudWatch Logs", group, stream, exc_info=True)


# ---- job bookkeeping ----------------------------------------------------------------------------------


@dataclass
class _Run:
    """A job this module is running (or ran): its thread, its stop switch, its directory."""

    kind: Literal["training", "processing"]
    name: str
    root: Path
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


@dataclass
class _Installed:
    ctx: LocalContext
    patches: MethodPatches
    runs: dict[tuple[str, str], _Run] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Slot:
    """The installed instance (a holder instead of a ``global`` statement)."""

    current: _Installed | None = None


def _require() -> _Installed:
    if _Slot.current is None:
        raise RuntimeError("mlcycle.local.sagemaker_jobs is not installed")
    return _Slot.current


def _start_run(state: _Installed, run: _Run, target: Callable[[], None]) -> None:
    with state.lock:
        state.runs[(run.kind, run.name)] = run
    run.thread = threading.Thread(target=target, name=f"sagemaker-{run.kind}-{run.name}", daemon=True)
    run.thread.start()


def job_root(state: _Installed | None, kind: Literal["training", "processing"], name: str) -> Path:
    """Where a job's container layout lives (tests and debugging pass ``None``: the installed instance)."""
    state = state or _require()
    return state.ctx.work_dir / ("jobs" if kind == "training" else "processing-jobs") / name


def base_env(ctx: LocalContext) -> dict[str, str]:
    """The server process's environment plus explicit AWS settings (handlers may have changed os.environ)."""
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=ctx.endpoint_url,
        AWS_REGION=ctx.region,
        AWS_DEFAULT_REGION=ctx.region,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        PYTHONUNBUFFERED="1",
    )
    return env


def _algorithm_error(failure_file: Path, result: ProcessResult) -> str:
    """FailureReason for a failed script: the failure file it wrote, else the tail of its stderr."""
    written = failure_file.read_text(errors="replace").strip() if failure_file.is_file() else ""
    if written:
        return f"AlgorithmError: {written}"[:FAILURE_REASON_LIMIT]
    # The toolkit's own failure message; the tail is the end of stderr, where a traceback's cause is.
    tail = "\n".join(result.stderr_tail[-10:])
    reason = f'AlgorithmError: ExecuteUserScriptError:\nExitCode {result.exit_code}\nErrorMessage "{tail}"'
    return reason[-FAILURE_REASON_LIMIT:] if len(reason) > FAILURE_REASON_LIMIT else reason


# ---- training jobs ------------------------------------------------------------------------------------


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
        return {k: v for k, v in decoded.items() if not k.startswith(_FRAMEWORK_PREFIX)}

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
    if not isinstance(submit, str) or not submit.startswith("s3://"):
        raise JobSetupError("hyperparameter sagemaker_submit_directory must be an s3:// URI of a tar.gz")
    archive = download_s3_file(s3, submit, layout.root / "sourcedir.tar.gz")
    extract_tar_gz(archive, layout.code)
    archive.unlink()
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
    state: _Installed, job: Any, status: str, secondary: str, reason: str | None = None
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
    _upload(s3, layout.root / "model.tar.gz", spec.model_artifacts)
    _upload(s3, layout.root / "output.tar.gz", spec.output_artifacts)
    job.model_artifacts = {"S3ModelArtifacts": spec.model_artifacts}


def _run_training(state: _Installed, job: Any, run: _Run) -> None:
    """The training job's thread: layout, download, run, upload, final status."""
    spec, layout = TrainingSpec.of(job), TrainingLayout(run.root)
    try:
        _train(state, job, run, spec, layout)
    except JobSetupError as error:
        _finish_training(state, job, "Failed", "Failed", f"ClientError: {error}")
    except Exception as error:
        log.exception("training job %s crashed in the local runner", spec.name)
        _finish_training(state, job, "Failed", "Failed", f"InternalServerError: {error}")


def _train(state: _Installed, job: Any, run: _Run, spec: TrainingSpec, layout: TrainingLayout) -> None:
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
    _publish_logs(
        ctx, "/aws/sagemaker/TrainingJobs", f"{spec.name}/{HOST}-{int(time.time())}", result.log_events
    )
    job.final_metric_data_list = _final_metrics(spec.metric_definitions, result.log_events)
    if result.ended_by == "exit" and result.exit_code != 0:
        _finish_training(state, job, "Failed", "Failed", _algorithm_error(layout.failure, result))
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


def _create_training_job(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_training_job(self: Any, **kwargs: Any) -> Any:
        from moto.sagemaker.exceptions import ValidationError

        state = _require()
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
        run = _Run("training", name, job_root(state, "training", name))
        _start_run(state, run, lambda: _run_training(state, job, run))
        return job

    return create_training_job


def _stop_training_job(self: Any, training_job_name: str) -> None:
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
    run = _require().runs.get(("training", training_job_name))
    if run is not None:
        run.stop.set()


def _stop_training_job_response(self: Any) -> Any:
    from moto.core.responses import EmptyResult

    self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
    return EmptyResult()


def _emit_training_state(state: _Installed, job: Any) -> None:
    """AWS's ``SageMaker Training Job State Change`` on each primary status (detail ~ DescribeTrainingJob)."""
    try:
        detail = json_safe(job.response_object)
        _put_sagemaker_event(state, "SageMaker Training Job State Change", detail, [job.arn])
    except Exception:  # an event must never break the job
        log.warning("could not emit the state change of %s", job.arn, exc_info=True)


# ---- processing jobs ----------------------------------------------------------------------------------


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
    if _PYTHON.match(argv[0]):
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


def _run_processing(state: _Installed, job: Any, run: _Run) -> None:
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
        _publish_logs(state.ctx, "/aws/sagemaker/ProcessingJobs", stream, result.log_events)
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
        _finish_processing(
            job, "Failed", _algorithm_error(paths.root / "output" / "failure", result), message
        )
        return
    for item in spec.outputs:
        output = item["S3Output"]
        _upload_tree(s3, paths.local(output["LocalPath"]), output["S3Uri"])
    if result.ended_by == "timeout":
        reason = f"MaxRuntimeExceeded: the job ran longer than MaxRuntimeInSeconds={spec.max_runtime}"
        _finish_processing(job, "Stopped", reason, message)
    else:
        _finish_processing(job, "Stopped" if result.ended_by == "stop" else "Completed", None, message)


#: moto's response handler drops CreateProcessingJob's ``Environment``: the response patch parks it here,
#: per request thread, for the backend patch to pick up.
_request = threading.local()


def _create_processing_job_response(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_processing_job(self: Any) -> Any:
        _request.environment = self._get_param("Environment")
        try:
            return original(self)
        finally:
            _request.environment = None

    return create_processing_job


def _create_processing_job(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_processing_job(self: Any, **kwargs: Any) -> Any:
        state = _require()
        job = original(self, **kwargs)
        job.processing_job_status = "InProgress"
        job.processing_start_time = utcnow()
        job.processing_end_time = job.failure_reason = job.exit_message = None
        job.environment = getattr(_request, "environment", None)
        run = _Run(
            "processing", job.processing_job_name, job_root(state, "processing", job.processing_job_name)
        )
        _start_run(state, run, lambda: _run_processing(state, job, run))
        return job

    return create_processing_job


def _stop_processing_job(original: Callable[..., Any]) -> Callable[..., Any]:
    def stop_processing_job(self: Any, processing_job_name: str) -> None:
        job = self.processing_jobs.get(processing_job_name)
        status = job.processing_job_status if job is not None else None
        original(self, processing_job_name)  # raises for an unknown job; sets Stopped
        if status == "InProgress":
            job.processing_job_status = "Stopping"
            run = _require().runs.get(("processing", processing_job_name))
            if run is not None:
                run.stop.set()
        elif job is not None:
            job.processing_job_status = status  # a finished job keeps its status

    return stop_processing_job


# ---- model registry events ----------------------------------------------------------------------------


def _put_sagemaker_event(
    state: _Installed, detail_type: str, detail: dict[str, Any], resources: list[str]
) -> None:
    """Put an ``aws.sagemaker`` event on the default bus, through ``events.put_platform_event`` if present."""
    from mlcycle.local import events as platform_events

    put = getattr(platform_events, "put_platform_event", None)
    if put is not None:
        put(state.ctx, source="aws.sagemaker", detail_type=detail_type, detail=detail)
        return
    from moto.events.models import events_backends

    entry = {
        "Source": "aws.sagemaker",
        "DetailType": detail_type,
        "Detail": json.dumps(detail),
        "Resources": resources,
        "Time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    events_backends[state.ctx.account][state.ctx.region].put_events([entry])


def _emit_model_package_state(backend: Any, package_arn: str) -> None:
    """The event AWS emits; a failure is logged, not raised: the package itself was stored."""
    try:
        detail = json_safe(backend.model_packages[package_arn].gen_response_object())
        _put_sagemaker_event(_require(), "SageMaker Model Package State Change", detail, [package_arn])
    except Exception:
        log.warning("could not emit the state change of %s", package_arn, exc_info=True)


def _create_model_package(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_model_package(self: Any, **kwargs: Any) -> Any:
        if kwargs.get("model_package_group_name") and not kwargs.get("model_approval_status"):
            kwargs["model_approval_status"] = "PendingManualApproval"  # AWS's default for versioned packages
        arn = original(self, **kwargs)
        if kwargs.get("model_approval_status"):
            _emit_model_package_state(self, arn)
        return arn

    return create_model_package


#: Fields UpdateModelPackage may leave out; moto overwrites them with None, AWS leaves them alone.
_KEPT_ON_UPDATE = ("model_approval_status", "approval_description", "customer_metadata_properties")


def _update_model_package(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_model_package(self: Any, **kwargs: Any) -> Any:
        requested = kwargs.get("model_package_arn")
        package = self.model_packages.get(self.model_package_name_mapping.get(requested, requested))
        before = package.model_approval_status if package is not None else None
        for name in _KEPT_ON_UPDATE if package is not None else ():
            if kwargs.get(name) is None:
                kwargs[name] = getattr(package, name)
        arn = original(self, **kwargs)
        if package is not None and package.model_approval_status != before:
            _emit_model_package_state(self, arn)
        return arn

    return update_model_package


# ---- install / uninstall ------------------------------------------------------------------------------


def install(ctx: LocalContext) -> None:
    """Patch moto's SageMaker backend so jobs run and approvals emit events."""
    from moto.sagemaker.models import SageMakerModelBackend as Backend
    from moto.sagemaker.responses import SageMakerResponse as Response

    uninstall()
    patches = MethodPatches()
    _Slot.current = _Installed(ctx=ctx, patches=patches)
    patches.replace(Backend, "create_training_job", _create_training_job(Backend.create_training_job))
    patches.replace(Backend, "stop_training_job", _stop_training_job)
    patches.replace(Response, "stop_training_job", _stop_training_job_response)
    patches.replace(Backend, "create_processing_job", _create_processing_job(Backend.create_processing_job))
    patches.replace(
        Response, "create_processing_job", _create_processing_job_response(Response.create_processing_job)
    )
    patches.replace(Backend, "stop_processing_job", _stop_processing_job(Backend.stop_processing_job))
    patches.replace(Backend, "create_model_package", _create_model_package(Backend.create_model_package))
    patches.replace(Backend, "update_model_package", _update_model_package(Backend.update_model_package))


def running_jobs() -> list[str]:
    """Names of jobs whose thread is still alive (tests, diagnostics)."""
    state = _Slot.current
    if state is None:
        return []
    with state.lock:
        return [run.name for run in state.runs.values() if run.thread is not None and run.thread.is_alive()]


def uninstall() -> None:
    """Stop every running job (its process group too), wait for the threads, restore moto."""
    state = _Slot.current
    if state is None:
        return
    with state.lock:
        runs = list(state.runs.values())
    for run in runs:
        run.stop.set()
    _join(run.thread for run in runs)
    state.patches.restore()
    _Slot.current = None


def _join(threads: Iterable[threading.Thread | None], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
