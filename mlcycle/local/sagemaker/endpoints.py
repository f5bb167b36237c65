"""Real SageMaker endpoints in the embedded AWS: this module keeps what serves each endpoint and runs the
rollouts; the model servers (servers), InvokeEndpoint (invocations) and data capture (capture) beside it.

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

import logging
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3

from mlcycle.local import context, faults
from mlcycle.local.common.s3files import s3_client, split_s3_uri
from mlcycle.local.common.values import utcnow
from mlcycle.local.context import LocalContext
from mlcycle.local.events import put_platform_event
from mlcycle.local.patching import MethodPatches
from mlcycle.local.sagemaker.capture import CaptureBuffer, CaptureSettings
from mlcycle.local.sagemaker.jobs import FAILURE_REASON_LIMIT
from mlcycle.local.sagemaker.servers import ModelServer, start_server
from mlcycle.local.sagemaker.shadows import ShadowCopies, apply_shadows, shadow_variants
from mlcycle.names import ENDPOINT_STATE_CHANGE, SAGEMAKER_SOURCE

log = logging.getLogger(__name__)

#: Seconds between capture flushes (read on every cycle, so tests and demos may change it at run time).
capture_flush_seconds: float = 2.0
#: Failed writes of the same capture records before they are kept on disk instead (see flush_capture).
capture_write_attempts: int = 5
#: Under the work directory: capture records S3 did not take, by the key they were meant for.
UNDELIVERED_CAPTURE = "capture-undelivered"


@dataclass
class LiveEndpoint:
    """What serves one endpoint right now."""

    name: str
    config_name: str
    servers: dict[str, ModelServer]
    capture: CaptureSettings | None
    #: During a blue/green update: the new fleet, and the share of traffic it takes (0 to 1).
    green: LiveEndpoint | None = None
    green_share: float = 0.0
    #: Shadow variants: they get a copy of the traffic, never answer it (mlcycle.local.sagemaker.shadows).
    shadows: dict[str, ModelServer] = field(default_factory=dict)

    def pick(self, target_variant: str | None) -> ModelServer | None:
        green = self.green
        if green is not None and random.random() < self.green_share:
            return green.pick(target_variant)
        if target_variant:
            return self.servers.get(target_variant)
        variants = list(self.servers.values())
        weights = [max(s.weight, 0.0) for s in variants]
        return (
            random.choices(variants, weights=weights if sum(weights) > 0 else None)[0] if variants else None
        )

    def stop(self) -> None:
        for server in [*self.servers.values(), *self.shadows.values()]:
            server.stop()
        if self.green is not None:
            self.green.stop()


@dataclass
class EndpointsState:
    """The endpoints' state on the running embedded AWS: what serves each one, rollouts, capture."""

    ctx: LocalContext
    patches: MethodPatches
    http: urllib3.PoolManager = field(default_factory=lambda: urllib3.PoolManager(maxsize=16))
    live: dict[tuple[str, str, str], LiveEndpoint] = field(default_factory=dict)
    #: Endpoints being created or updated: a delete during that time tells the thread to discard its work.
    generations: dict[tuple[str, str, str], int] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    buffer: CaptureBuffer = field(default_factory=CaptureBuffer)
    copies: ShadowCopies = field(default_factory=ShadowCopies)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


def endpoints_state() -> EndpointsState:
    return context.installed(EndpointsState)


def announce(state: EndpointsState, endpoint: Any) -> None:
    """SageMaker's ``SageMaker Endpoint State Change`` on the default bus (call outside ``state.lock``)."""
    detail = {
        "EndpointName": endpoint.endpoint_name,
        "EndpointArn": endpoint.arn,
        "EndpointConfigName": endpoint.endpoint_config_name,
        "EndpointStatus": endpoint.endpoint_status,
        **({"FailureReason": endpoint.failure_reason} if endpoint.failure_reason else {}),
    }
    try:
        put_platform_event(
            state.ctx,
            source=SAGEMAKER_SOURCE,
            detail_type=ENDPOINT_STATE_CHANGE,
            detail=detail,
            resources=[endpoint.arn],
        )
    except Exception as error:  # the endpoint changed state all the same: the lost event is kept, not raised
        # Its deployment outcome (functions/deployment_outcome.py) will not be recorded: say so where seen.
        faults.record(
            f"{ENDPOINT_STATE_CHANGE} of {endpoint.endpoint_name} ({endpoint.endpoint_status}) was not put",
            error,
            state.ctx,
        )


def fall_back(
    state: EndpointsState,
    endpoint: Any,
    reason: str,
    *,
    key: tuple[str, str, str],
    generation: int,
    fallback: str,
    blue: LiveEndpoint | None = None,
) -> None:
    """End a create or update that did not happen: unless a later one superseded it, the endpoint returns
    to ``fallback`` with ``reason`` as its FailureReason (``blue`` serves alone again), and says so."""
    with state.lock:
        if blue is not None:
            blue.green, blue.green_share = None, 0.0
        current = state.generations.get(key) == generation
        if current:
            endpoint.failure_reason = reason[:FAILURE_REASON_LIMIT]
            endpoint.endpoint_status = fallback
            endpoint.last_modified_time = utcnow()
    if current:
        announce(state, endpoint)


def endpoint_key(backend: Any, name: str) -> tuple[str, str, str]:
    return (backend.account_id, backend.region_name, name)


def deploy_fleet(state: EndpointsState, backend: Any, endpoint_name: str, config: Any) -> LiveEndpoint:
    """Start a server for every production variant of ``config``; all or nothing."""
    servers: dict[str, ModelServer] = {}
    shadows: dict[str, ModelServer] = {}
    stamp = f"{config.endpoint_config_name}-{int(time.time() * 1000)}"
    try:
        for fleet, variants in ((servers, config.production_variants), (shadows, shadow_variants(config))):
            for variant in variants:
                directory = state.ctx.work_dir / "endpoints" / endpoint_name / stamp / variant["VariantName"]
                fleet[variant["VariantName"]] = start_server(
                    state.ctx, backend, variant, directory, http=state.http, stop=state.stopping
                )
    except BaseException:
        for server in [*servers.values(), *shadows.values()]:
            server.stop()
        raise
    capture = CaptureSettings.of(config.data_capture_config)
    return LiveEndpoint(endpoint_name, config.endpoint_config_name, servers, capture, shadows=shadows)


def capture_summary(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
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


def apply_config(endpoint: Any, config: Any) -> None:
    endpoint.endpoint_config_name = config.endpoint_config_name
    endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
    apply_shadows(endpoint, config)
    endpoint.data_capture_config = capture_summary(config.data_capture_config)
    endpoint.last_modified_time = utcnow()


def endpoint_servers(
    endpoint_name: str, account: str | None = None, region: str | None = None
) -> list[ModelServer]:
    """The servers behind an endpoint (tests, diagnostics); empty when it is not in service."""
    state = endpoints_state()
    key = (account or state.ctx.account, region or state.ctx.region, endpoint_name)
    with state.lock:
        live = state.live.get(key)
        return list(live.servers.values()) if live else []


def flush_capture(*, final: bool = False) -> int:
    """Write every buffered capture record to S3 now; returns the number of files written.

    A failed write puts its records back for the next flush. After :data:`capture_write_attempts` failed
    writes, or on the last flush (``final``: the endpoint or the embedded AWS stops), they are kept in a
    file under the work directory instead, and the log names it: never dropped, never silently."""
    state = context.installed_or_none(EndpointsState)
    if state is None:
        return 0
    written = 0
    s3 = s3_client(state.ctx)
    for prefix, batch in state.buffer.take().items():
        first = min(when for when, _ in batch.entries)
        key_uri = f"{prefix}/{first:%M-%S}-{first.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
        bucket, key = split_s3_uri(key_uri)
        body = "".join(line + "\n" for _, line in sorted(batch.entries, key=lambda entry: entry[0]))
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/jsonlines")
            written += 1
        except Exception as error:  # a missing bucket must not take the endpoint down
            batch.failed_writes += 1
            if final or batch.failed_writes >= capture_write_attempts:
                kept = _keep_undelivered(state, key, body)
                faults.record(
                    f"data capture {key_uri} not written: {len(batch.entries)} records kept in {kept}",
                    error,
                    state.ctx,
                )
            else:
                log.warning("could not write data capture to %s (%s): will retry", key_uri, error)
                state.buffer.put_back(prefix, batch)
    return written


def _keep_undelivered(state: EndpointsState, key: str, body: str) -> str:
    path = state.ctx.work_dir / UNDELIVERED_CAPTURE / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as kept:
        kept.write(body)
    return str(path)


def flush_loop(state: EndpointsState) -> None:
    while not state.stopping.wait(capture_flush_seconds):
        try:
            flush_capture()
        except Exception as error:  # the loop goes on: the buffer keeps what was not written
            faults.record("data capture flush failed", error, state.ctx)
