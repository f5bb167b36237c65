"""Real SageMaker batch transform jobs in the embedded AWS (moto marks them Completed at once and runs
nothing; it has no StopTransformJob, checks neither the model nor the name, pages ListTransformJobs before
filtering and never sorts it).

CreateTransformJob: ``InProgress`` at creation; a thread then serves the job's model with the local model
server endpoints use (``servers.start_server``: the model's ``model.tar.gz`` and container environment,
the job's ``Environment`` over it), asks it ``GET /execution-parameters`` for whatever of
MaxConcurrentTransforms, BatchStrategy and MaxPayloadInMB the request leaves out (as SageMaker asks a
container), and transforms every object under ``TransformInput``'s S3 prefix (or listed by its manifest),
one after the other: streamed from S3 (gunzipped for ``CompressionType: Gzip``) and split by line in
bounded memory, sent in mini-batches of up to MaxPayloadInMB through ``POST /invocations`` with the job's
ContentType and Accept, at most MaxConcurrentTransforms requests in flight, the answers written in input
order to ``{S3OutputPath}/{path under the prefix}.out`` (records.py assembles and joins them).

As in SageMaker, an object's ``.out`` is uploaded only when the whole object succeeded; the other objects
still run, and any failure fails the job. A refused request is narrowed down (the batch halved until one
record fails alone), so the FailureReason names the object and the line of the bad record:
``ClientError: s3://bucket/in/part-2.csv line 17: the model answered 400: ...``. Status InProgress ->
Completed | Failed | Stopped (``StopTransformJob``: Stopping at once, Stopped when the requests in flight
have ended), with AWS's ``SageMaker Transform Job State Change`` event on each. Logs go to CloudWatch Logs
``/aws/sagemaker/TransformJobs``: the model server's and the data log (SageMaker's ``[sagemaker logs]``
lines). One instance: ``TransformResources.InstanceCount`` above 1 transforms the same way, on one server.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3
from botocore.exceptions import ClientError

from mlcycle.local import faults
from mlcycle.local.common.processes import publish_logs
from mlcycle.local.common.s3files import JobSetupError, s3_client, split_s3_uri, upload_file
from mlcycle.local.common.values import json_safe, utcnow
from mlcycle.local.sagemaker import records, servers
from mlcycle.local.sagemaker.jobs import (
    FAILURE_REASON_LIMIT,
    JobRun,
    JobsState,
    job_root,
    jobs_state,
    start_run,
)
from mlcycle.local.sagemaker.records import Batch, RecordError
from mlcycle.local.sagemaker.registry_events import put_sagemaker_event

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

STATE_CHANGE = "SageMaker Transform Job State Change"
LOG_GROUP = "/aws/sagemaker/TransformJobs"
INSTANCE = "i-0local0transform0"
#: SageMaker's defaults when neither the request nor the container's execution parameters say.
DEFAULT_PAYLOAD_MB, MAX_PAYLOAD_MB = 6, 100
DEFAULT_TIMEOUT, DEFAULT_RETRIES = 600.0, 3
_MB = 1 << 20


@dataclass(frozen=True)
class TransformSpec:
    """What the runner needs from a CreateTransformJob request."""

    name: str
    arn: str
    model_name: str
    data_type: str
    input_uri: str
    content_type: str | None
    compression: str
    split: str
    output_path: str
    accept: str | None
    by_line: bool
    join: bool
    filters: tuple[str, ...]  # InputFilter and OutputFilter other than "$" (all)
    strategy: str | None
    payload_mb: int | None
    concurrency: int | None
    timeout: float
    retries: int
    environment: dict[str, str]

    @classmethod
    def of(cls, job: Any) -> TransformSpec:
        given = job.transform_input or {}
        source = (given.get("DataSource") or {}).get("S3DataSource") or {}
        output = job.transform_output or {}
        client = job.model_client_config or {}
        return cls(
            name=job.transform_job_name,
            arn=job.arn,
            model_name=job.model_name,
            data_type=source.get("S3DataType", "S3Prefix"),
            input_uri=source.get("S3Uri", ""),
            content_type=given.get("ContentType"),
            compression=given.get("CompressionType") or "None",
            split=given.get("SplitType") or "None",
            output_path=output.get("S3OutputPath", "").rstrip("/"),
            accept=output.get("Accept"),
            by_line=output.get("AssembleWith") == "Line",
            join=(job.data_processing or {}).get("JoinSource") == "Input",
            filters=tuple(
                name
                for name in ("InputFilter", "OutputFilter")
                if (job.data_processing or {}).get(name, "$") not in ("", "$")
            ),
            strategy=job.batch_strategy,
            payload_mb=job.max_payload_in_mb,
            concurrency=job.max_concurrent_transforms,
            timeout=float(client.get("InvocationsTimeoutInSeconds") or DEFAULT_TIMEOUT),
            retries=int(client.get("InvocationsMaxRetries", DEFAULT_RETRIES)),
            environment={str(k): str(v) for k, v in (job.environment or {}).items()},
        )

    def check(self) -> None:
        """What the local runner cannot do, as a ClientError before any work."""
        unsupported = {
            "S3DataType": (self.data_type, ("S3Prefix", "ManifestFile")),
            "SplitType": (self.split, ("None", "Line")),
            "CompressionType": (self.compression, ("None", "Gzip")),
        }
        for name, (value, known) in unsupported.items():
            if value not in known:
                raise JobSetupError(f"{name} {value} is not supported locally (only {', '.join(known)})")
        if self.filters:  # silently ignoring them would write other columns than AWS writes
            verb = "is" if len(self.filters) == 1 else "are"
            raise JobSetupError(f"{' and '.join(self.filters)} (JSONPath) {verb} not supported locally")
        if self.join and records.media_type(self.content_type) not in (records.CSV, *records.JSON_TYPES):
            raise JobSetupError(f"JoinSource Input needs CSV or JSON input, not {self.content_type}")


@dataclass(frozen=True)
class Batching:
    """How records go to the model: the request's values, else the container's execution parameters."""

    multi_record: bool
    max_payload: int  # bytes
    concurrency: int

    def describe(self) -> str:
        strategy = "MULTI_RECORD" if self.multi_record else "SINGLE_RECORD"
        return (
            f"MaxConcurrentTransforms={self.concurrency}, MaxPayloadInMB={self.max_payload // _MB}, "
            f"BatchStrategy={strategy}"
        )


@dataclass(frozen=True)
class InputObject:
    bucket: str
    key: str
    relative: str  # the path under the input prefix, which the .out keeps

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer at all
    body: bytes
    content_type: str

    @property
    def ok(self) -> bool:
        return self.status == 200

    def reason(self) -> str:
        text = self.body.decode("utf-8", "replace").strip()[:400]
        return text if self.status == 0 else f"the model answered {self.status}: {text}"


class ObjectFailed(Exception):
    """One input object failed; the message is the job's FailureReason for it."""


def list_inputs(s3: S3Client, spec: TransformSpec) -> list[InputObject]:
    """The objects to transform: every object under the prefix, or each one the manifest lists."""
    if spec.data_type == "ManifestFile":
        return _manifest_inputs(s3, spec.input_uri)
    bucket, prefix = split_s3_uri(spec.input_uri)
    base = prefix[: prefix.rfind("/") + 1]  # outputs keep the path below the prefix's folder
    found = [
        InputObject(bucket, entry["Key"], entry["Key"][len(base) :])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for entry in page.get("Contents", [])
        if not entry["Key"].endswith("/")
    ]
    if not found:
        raise JobSetupError(
            f'No S3 objects found under S3 URL "{spec.input_uri}" given in input data source.'
        )
    return found


def _manifest_inputs(s3: S3Client, uri: str) -> list[InputObject]:
    bucket, key = split_s3_uri(uri)
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix_bucket, prefix = split_s3_uri(manifest[0]["prefix"])
        return [InputObject(prefix_bucket, prefix + str(rel), str(rel)) for rel in manifest[1:]]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise JobSetupError(
            f"manifest {uri} is not [{{'prefix': 's3://...'}}, 'key', ...]: {error}"
        ) from error


def _check_output(s3: S3Client, output_path: str) -> None:
    """The output bucket must exist before any work is done (AWS fails such a job as a client error)."""
    bucket, _ = split_s3_uri(output_path + "/")
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        raise JobSetupError(f"cannot write to S3OutputPath {output_path}: {error}") from None


class ModelClient:
    """``POST /invocations`` on the job's model server with its types, timeout and retries."""

    def __init__(self, server: servers.ModelServer, spec: TransformSpec, concurrency: int) -> None:
        self.url = f"{server.url}/invocations"
        self.spec = spec
        self.http = urllib3.PoolManager(maxsize=max(1, concurrency))
        self.headers = {
            name: value
            for name, value in (("Content-Type", spec.content_type), ("Accept", spec.accept))
            if value
        }

    def invoke(self, body: bytes) -> Answer:
        """The answer; a 5xx or no answer is retried up to InvocationsMaxRetries times (a 4xx never
        changes on a retry)."""
        answer = Answer(0, b"", "")
        for _ in range(self.spec.retries + 1):
            answer = self._once(body)
            if 0 < answer.status < 500:
                break
        return answer

    def _once(self, body: bytes) -> Answer:
        try:
            response = self.http.request(
                "POST", self.url, body=body, headers=self.headers, timeout=self.spec.timeout, retries=False
            )
        except urllib3.exceptions.HTTPError as error:
            message = f"the model server did not answer /invocations within {self.spec.timeout:g}s: {error}"
            return Answer(0, message.encode(), "text/plain")
        return Answer(response.status, response.data, response.headers.get("Content-Type", ""))


class TransformRun:
    """One job's work on its thread: serve the model, transform each object, conclude."""

    def __init__(self, state: JobsState, backend: Any, job: Any, run: JobRun) -> None:
        self.state, self.backend, self.job, self.run = state, backend, job, run
        self.spec = TransformSpec.of(job)
        self.data_log: list[tuple[int, str]] = []

    def execute(self) -> None:
        server: servers.ModelServer | None = None
        try:
            self.spec.check()
            s3 = s3_client(self.state.ctx)
            inputs = list_inputs(s3, self.spec)
            _check_output(s3, self.spec.output_path)
            server = self._serve()
            batching = self._batching(server)
            self._log(batching.describe())
            client = ModelClient(server, self.spec, batching.concurrency)
            failures = [f for f in (self._transform(s3, client, batching, item) for item in inputs) if f]
            self._conclude(failures, len(inputs))
        except (JobSetupError, servers.DeployError) as error:
            if self.run.stop.is_set():  # stopped while the model server was starting
                _finish(self.state, self.job, "Stopped")
            else:
                _finish(self.state, self.job, "Failed", f"ClientError: {error}")
        except Exception as error:
            log.exception("transform job %s crashed in the local runner", self.spec.name)
            _finish(self.state, self.job, "Failed", f"InternalServerError: {error}")
        finally:
            if server is not None:
                server.stop()
            self._publish_logs(server)

    def _serve(self) -> servers.ModelServer:
        workers = max(1, min(self.spec.concurrency or 1, os.cpu_count() or 1))
        environment = {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)}
        environment.update(self.spec.environment)
        return servers.start_server(
            self.state.ctx,
            self.backend,
            {"ModelName": self.spec.model_name, "VariantName": "AllTraffic"},
            self.run.root / "server",
            http=urllib3.PoolManager(),
            stop=self.run.stop,
            environment=environment,
        )

    def _batching(self, server: servers.ModelServer) -> Batching:
        spec = self.spec
        asked: dict[str, Any] = {}
        if None in (spec.strategy, spec.payload_mb, spec.concurrency):
            with contextlib.suppress(urllib3.exceptions.HTTPError, ValueError):
                response = urllib3.request("GET", f"{server.url}/execution-parameters", timeout=5.0)
                asked = json.loads(response.data) if response.status == 200 else {}
        strategy = spec.strategy or str(asked.get("BatchStrategy", "MultiRecord"))
        payload_mb = spec.payload_mb if spec.payload_mb is not None else asked.get("MaxPayloadInMB")
        # MaxPayloadInMB 0 streams a whole object in AWS; locally it is bounded like the largest payload.
        payload_mb = int(payload_mb if payload_mb is not None else DEFAULT_PAYLOAD_MB) or MAX_PAYLOAD_MB
        return Batching(
            multi_record=strategy.replace("_", "").lower() == "multirecord",
            max_payload=min(payload_mb, MAX_PAYLOAD_MB) * _MB,
            concurrency=max(1, int(spec.concurrency or asked.get("MaxConcurrentTransforms") or 1)),
        )

    def _transform(self, s3: S3Client, client: ModelClient, batching: Batching, item: InputObject) -> str:
        """Transform one object into its ``.out``; returns the failure reason, or "" when it succeeded."""
        if self.run.stop.is_set():
            return ""
        # Named by a digest, not the key: a key may hold ``..`` and must not lead out of the job's directory.
        target = self.run.root / "output" / f"{hashlib.sha256(item.key.encode()).hexdigest()[:16]}.out"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with target.open("wb") as out:
                for batch, answer in self._answers(client, self._batches(s3, item, batching), batching):
                    out.write(self._assemble(batch, answer))
            if not self.run.stop.is_set():  # a stopped job leaves its last object unfinished, unuploaded
                upload_file(s3, target, f"{self.spec.output_path}/{item.relative}.out")
            return ""
        except RecordError as error:
            self._log(f"{item.bucket}/{item.key}: {error.where}: {error}")
            return f"{item.uri} {error.where}: {error}"
        except (OSError, EOFError, zlib.error) as error:  # not gzip data, or a read that broke off
            self._log(f"{item.bucket}/{item.key}: {error}")
            return f"{item.uri}: cannot read it: {error}"
        finally:
            target.unlink(missing_ok=True)

    def _batches(self, s3: S3Client, item: InputObject, batching: Batching) -> Iterator[Batch]:
        body: Any = s3.get_object(Bucket=item.bucket, Key=item.key)["Body"]
        with contextlib.closing(body):
            stream = gzip.GzipFile(fileobj=body) if self.spec.compression == "Gzip" else body
            if self.spec.split == "None":  # the whole object is one request
                data = stream.read(batching.max_payload + 1)
                if len(data) > batching.max_payload:
                    raise RecordError(
                        f"the object is larger than MaxPayloadInMB={batching.max_payload // _MB}", 1
                    )
                yield Batch((data,), (1,), whole=True)
                return
            lines = records.read_lines(stream, limit=batching.max_payload)
            yield from records.batches(
                lines, multi_record=batching.multi_record, max_payload=batching.max_payload
            )

    def _answers(
        self, client: ModelClient, batches: Iterator[Batch], batching: Batching
    ) -> Iterator[tuple[Batch, Answer]]:
        """Each batch with its answer, in input order, with at most ``concurrency`` requests in flight (so
        memory holds that many batches, whatever the object's size)."""
        pool = ThreadPoolExecutor(
            max_workers=batching.concurrency, thread_name_prefix=f"transform-{self.spec.name}"
        )
        window: deque[tuple[Batch, Future[Answer]]] = deque()
        try:
            for batch in batches:
                if self.run.stop.is_set():
                    break
                window.append((batch, pool.submit(client.invoke, batch.body)))
                if len(window) >= batching.concurrency:
                    yield self._settled(client, *window.popleft())
            while window and not self.run.stop.is_set():
                yield self._settled(client, *window.popleft())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _settled(self, client: ModelClient, batch: Batch, future: Future[Answer]) -> tuple[Batch, Answer]:
        answer = future.result()
        if not answer.ok:
            raise self._locate(client, batch, answer)
        return batch, answer

    def _locate(self, client: ModelClient, batch: Batch, answer: Answer) -> RecordError:
        """Halve a refused batch until one record fails alone, so the reason names its line (a batch
        whose halves both pass fails as a whole, and a model that does not answer is not asked again)."""
        while len(batch.records) > 1 and answer.status != 0:
            for half in batch.halves():
                half_answer = client.invoke(half.body)
                if not half_answer.ok:
                    batch, answer = half, half_answer
                    break
            else:
                break
        return RecordError(answer.reason(), batch.lines[0], batch.where)

    def _assemble(self, batch: Batch, answer: Answer) -> bytes:
        spec = self.spec
        return records.assemble(
            batch,
            answer.body,
            answer.content_type or spec.accept or "",
            input_type=spec.content_type or "",
            by_line=spec.by_line,
            join=spec.join,
        )

    def _conclude(self, failures: list[str], total: int) -> None:
        if self.run.stop.is_set():
            _finish(self.state, self.job, "Stopped")
        elif failures:
            more = f" ({len(failures)} of {total} objects failed)" if len(failures) > 1 else ""
            kind = (
                "AlgorithmError"
                if "answered 5" in failures[0] or "did not answer" in failures[0]
                else "ClientError"
            )
            _finish(self.state, self.job, "Failed", f"{kind}: {failures[0]}{more}")
        else:
            _finish(self.state, self.job, "Completed")

    def _log(self, message: str) -> None:
        self.data_log.append((int(time.time() * 1000), f"[sagemaker logs]: {message}"))

    def _publish_logs(self, server: servers.ModelServer | None) -> None:
        stream = f"{self.spec.name}/{INSTANCE}-{int(time.time())}"
        if server is not None and server.log_path.is_file():
            with server.log_path.open(errors="replace") as handle:
                tail = deque(handle, maxlen=10_000)
            now = int(time.time() * 1000)
            publish_logs(self.state.ctx, LOG_GROUP, stream, [(now, line.rstrip("\n")) for line in tail])
        if self.data_log:
            publish_logs(self.state.ctx, LOG_GROUP, f"{stream}/data-log", self.data_log)


def _finish(state: JobsState, job: Any, status: str, reason: str | None = None) -> None:
    now = utcnow()
    job.failure_reason = reason[:FAILURE_REASON_LIMIT] if reason else None
    job.transform_end_time = job.last_modified_time = now
    job.transform_job_status = status
    _emit(state, job)


def _emit(state: JobsState, job: Any) -> None:
    """AWS's ``SageMaker Transform Job State Change`` (detail ~ DescribeTransformJob)."""
    try:
        put_sagemaker_event(state, STATE_CHANGE, json_safe(_described(job)), [job.arn])
    except Exception as error:  # an event must never break the job; its loss is kept where it is seen
        faults.record(f"{STATE_CHANGE} of {job.arn} was not put", error, state.ctx)


def _described(job: Any) -> dict[str, Any]:
    described = dict(job.response_object)
    described.pop("Tags", None)  # DescribeTransformJob returns no tags (ListTags does)
    return described


# ---- moto's methods ------------------------------------------------------------------------------------


def create_transform_job_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_transform_job(self: Any, **kwargs: Any) -> Any:
        from moto.sagemaker.exceptions import ValidationError

        state = jobs_state()
        name = kwargs["transform_job_name"]
        if name in self.transform_jobs:
            raise ValidationError(
                message="Job name must be unique within an AWS account and region, and a job with this name "
                f"already exists ({self.transform_jobs[name].arn})"
            )
        if kwargs.get("model_name") not in self._models:
            arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:model/{kwargs.get('model_name')}"
            raise ValidationError(message=f'Could not find model "{arn}".')
        job = original(self, **kwargs)
        job.transform_job_status = "InProgress"
        job.transform_start_time = utcnow()
        job.transform_end_time = job.failure_reason = job.labeling_job_arn = job.auto_ml_job_arn = None
        _emit(state, job)
        run = JobRun("transform", name, job_root(state, "transform", name))
        shutil.rmtree(run.root, ignore_errors=True)
        start_run(state, run, TransformRun(state, self, job, run).execute)
        return job

    return create_transform_job


def describe_transform_job_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    def describe_transform_job(self: Any, transform_job_name: str) -> dict[str, Any]:
        described = dict(original(self, transform_job_name))
        described.pop("Tags", None)
        return described

    return describe_transform_job


def stop_transform_job_patch(self: Any, transform_job_name: str) -> None:
    """StopTransformJob (moto has none): Stopping now, Stopped when the requests in flight have ended."""
    from moto.sagemaker.exceptions import ValidationError

    job = self.transform_jobs.get(transform_job_name)
    if job is None:
        arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:transform-job/{transform_job_name}"
        raise ValidationError(message=f"Could not find transform job '{arn}'.")
    if job.transform_job_status != "InProgress":
        raise ValidationError(
            message="The request was rejected because the transform job is in status "
            f"{job.transform_job_status}."
        )
    job.transform_job_status = "Stopping"
    job.last_modified_time = utcnow()
    run = jobs_state().runs.get(("transform", transform_job_name))
    if run is not None:
        run.stop.set()


def stop_transform_job_response_patch(self: Any) -> Any:
    from moto.core.responses import EmptyResult

    self.sagemaker_backend.stop_transform_job(self._get_param("TransformJobName"))
    return EmptyResult()


_SORT_KEYS = {"Name": "TransformJobName", "CreationTime": "CreationTime", "Status": "TransformJobStatus"}


def list_transform_jobs_response_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    """Park SortBy/SortOrder (AWS's defaults: CreationTime, Descending) for the backend patch, per thread."""

    def list_transform_jobs(self: Any) -> Any:
        request = jobs_state().request
        request.transform_sort = (
            self._get_param("SortBy", "CreationTime"),
            self._get_param("SortOrder", "Descending"),
        )
        try:
            return original(self)
        finally:
            request.transform_sort = None

    return list_transform_jobs


def list_transform_jobs_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    """Filter everything first, then sort and page (moto pages first, so a filter could empty a page)."""

    def list_transform_jobs(
        self: Any, next_token: str | None, max_results: int | None, **filters: Any
    ) -> Any:
        from moto.sagemaker.exceptions import AWSValidationException

        listed = original(self, next_token=None, max_results=None, **filters)["TransformJobSummaries"]
        sort_by, order = getattr(jobs_state().request, "transform_sort", None) or (
            "CreationTime",
            "Descending",
        )
        listed.sort(
            key=lambda summary: summary[_SORT_KEYS.get(sort_by, "CreationTime")],
            reverse=order == "Descending",
        )
        try:
            start = int(next_token) if next_token else 0
        except ValueError:
            raise AWSValidationException('Invalid pagination token because "{0}".') from None
        end = start + (max_results or 10)
        return {
            "TransformJobSummaries": listed[start:end],
            "NextToken": str(end) if end < len(listed) else None,
        }

    return list_transform_jobs


def job_directory(name: str) -> Path:
    """Where a transform job works (tests, debugging)."""
    return job_root(None, "transform", name)
