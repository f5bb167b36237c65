"""InvokeEndpoint in the embedded AWS: the request goes to a live model server of the endpoint (by
``TargetVariant`` or by weight), its answer comes back, and the exchange is captured."""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import urllib3

from mlcycle.local.common.values import utcnow
from mlcycle.local.sagemaker.capture import Invocation, capture_record
from mlcycle.local.sagemaker.endpoints import EndpointsState, LiveEndpoint, endpoints_state
from mlcycle.local.sagemaker.servers import ModelServer

log = logging.getLogger(__name__)

#: SageMaker's invocation timeout.
invocation_timeout: float = 60.0


_Response = tuple[int, dict[str, str], bytes | str]


def _error(status: int, code: str, message: str, **extra: Any) -> _Response:
    return (
        status,
        {"Content-Type": "application/json", "x-amzn-ErrorType": code},
        json.dumps({"message": message, **extra}),
    )


def invoke(account: str, region: str, request: Invocation) -> _Response:
    """Forward one InvokeEndpoint to the endpoint's server; capture it when configured."""
    state = endpoints_state()
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
    started = time.perf_counter()
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
        publish_metrics(
            account, region, live.name, server.variant, status=502, model_seconds=None, started=started
        )
        _capture(
            state, live, server, request, body=str(error).encode(), content_type="text/plain", status=502
        )
        message = f"model server for variant {server.variant} did not answer ({error}); see {server.log_path}"
        return _error(424, "ModelError", message, OriginalStatusCode=502, OriginalMessage=str(error))
    model_seconds = time.perf_counter() - started
    response = _answer(state, live, server, request, answer)
    publish_metrics(
        account,
        region,
        live.name,
        server.variant,
        status=answer.status,
        model_seconds=model_seconds,
        started=started,
    )
    return response


def publish_metrics(
    account: str,
    region: str,
    endpoint: str,
    variant: str,
    *,
    status: int,
    model_seconds: float | None,
    started: float,
) -> None:
    """The endpoint's per-variant metrics under SageMaker's names (namespace ``AWS/SageMaker``), one
    datapoint each per invocation; the rollback and SLO alarms are evaluated from them."""
    from moto.cloudwatch.models import cloudwatch_backends

    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    total_us = (time.perf_counter() - started) * 1e6
    data: list[dict[str, Any]] = [
        {"MetricName": "Invocations", "Value": 1.0, "Unit": "None"},
        {"MetricName": "Invocation4XXErrors", "Value": float(400 <= status < 500), "Unit": "None"},
        {"MetricName": "Invocation5XXErrors", "Value": float(status >= 500), "Unit": "None"},
    ]
    if model_seconds is not None:
        model_us = model_seconds * 1e6
        data.append({"MetricName": "ModelLatency", "Value": model_us, "Unit": "Microseconds"})
        data.append(
            {"MetricName": "OverheadLatency", "Value": max(total_us - model_us, 0.0), "Unit": "Microseconds"}
        )
    now = utcnow()
    for datum in data:
        datum.update(Dimensions=dimensions, Timestamp=now)
    try:
        cloudwatch_backends[account][region].put_metric_data("AWS/SageMaker", data)
    except Exception:  # metrics must never fail an invocation; say so where a person looks
        log.warning("could not publish the metrics of endpoint %s", endpoint, exc_info=True)


def _answer(
    state: EndpointsState,
    live: LiveEndpoint,
    server: ModelServer,
    request: Invocation,
    answer: urllib3.BaseHTTPResponse,
) -> _Response:
    body = answer.data
    content_type = answer.headers.get("Content-Type", "application/octet-stream")
    _capture(state, live, server, request, body=body, content_type=content_type, status=answer.status)
    if answer.status >= 400:
        kind = "client" if answer.status < 500 else "server"
        text = body.decode("utf-8", "replace")
        message = (
            f'Received {kind} error ({answer.status}) from {server.variant} with message "{text}". '
            f"See {server.log_path} for more information."
        )
        return _error(424, "ModelError", message, OriginalStatusCode=answer.status, OriginalMessage=text)
    headers = {"Content-Type": content_type, "x-Amzn-Invoked-Production-Variant": server.variant}
    attributes = answer.headers.get("X-Amzn-SageMaker-Custom-Attributes")
    if attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
    return 200, headers, body


def _capture(
    state: EndpointsState,
    live: LiveEndpoint,
    server: ModelServer,
    request: Invocation,
    *,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    """Buffer the exchange's capture record when the endpoint captures and this one is sampled. A failed
    invocation is captured too, with its status: the monitors count errors from what they read."""
    capture = live.capture
    if capture is None or random.uniform(0, 100) >= capture.sampling_percentage:
        return
    when = datetime.now(UTC)
    record = capture_record(capture, request, body, content_type, when, status=status)
    prefix = f"{capture.destination}/{live.name}/{server.variant}/{when:%Y/%m/%d/%H}"
    state.buffer.add(prefix, when, json.dumps(record, separators=(",", ":")))


def invoke_endpoint_response_patch(self: Any) -> _Response:
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
