"""InvokeEndpoint in the embedded AWS: the request goes to a live model server of the endpoint (by
``TargetVariant`` or by weight), its answer comes back, and the exchange is captured."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import urllib3

from mlcycle.local import faults
from mlcycle.local.common.values import utcnow
from mlcycle.local.sagemaker.capture import Invocation, capture_record
from mlcycle.local.sagemaker.endpoints import EndpointsState, LiveEndpoint, endpoints_state
from mlcycle.local.sagemaker.servers import ModelServer
from mlcycle.local.sagemaker.shadows import copy_share, mirror

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
    exchange = _Exchange(state, live, request)
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
        exchange.capture(server.variant, str(error).encode(), "text/plain", status=502)
        message = f"model server for variant {server.variant} did not answer ({error}); see {server.log_path}"
        return _error(424, "ModelError", message, OriginalStatusCode=502, OriginalMessage=str(error))
    model_seconds = time.perf_counter() - started
    response = _answer(exchange, server, answer)
    _mirror(exchange, account, region, server, headers)
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
    except Exception as error:  # metrics must never fail an invocation; say so where a person looks
        faults.record(f"AWS/SageMaker metrics of endpoint {endpoint} were not stored", error)


def _answer(exchange: _Exchange, server: ModelServer, answer: urllib3.BaseHTTPResponse) -> _Response:
    body = answer.data
    content_type = answer.headers.get("Content-Type", "application/octet-stream")
    exchange.capture(server.variant, body, content_type, status=answer.status)
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


class _Exchange:
    """One InvokeEndpoint: whether it is captured (one sampling decision, shared by its shadow copy) and
    the event id its capture records share, so a shadow's answer pairs with the production answer."""

    def __init__(self, state: EndpointsState, live: LiveEndpoint, request: Invocation) -> None:
        self.state, self.live, self.request = state, live, request
        self.event_id = str(uuid.uuid4())
        capture = live.capture
        self.sampled = capture is not None and random.uniform(0, 100) < capture.sampling_percentage

    def capture(self, variant: str, body: bytes, content_type: str, *, status: int) -> None:
        """Buffer the capture record of ``variant``'s answer. A failed invocation is captured too, with its
        status: the monitors count errors from what they read."""
        capture = self.live.capture
        if capture is None or not self.sampled:
            return
        when = datetime.now(UTC)
        record = capture_record(
            capture, self.request, body, content_type, when, status=status, event_id=self.event_id
        )
        prefix = f"{capture.destination}/{self.live.name}/{variant}/{when:%Y/%m/%d/%H}"
        self.state.buffer.add(prefix, when, json.dumps(record, separators=(",", ":")))


def _mirror(
    exchange: _Exchange, account: str, region: str, served: ModelServer, headers: dict[str, str]
) -> None:
    """Copy the request to the endpoint's shadow variants; their answers are captured and measured only."""
    live = exchange.live
    for shadow in live.shadows.values():

        def answered(
            status: int,
            body: bytes,
            content_type: str,
            model_seconds: float | None,
            shadow: ModelServer = shadow,
        ) -> None:
            exchange.capture(shadow.variant, body, content_type, status=status)
            publish_metrics(
                account,
                region,
                live.name,
                shadow.variant,
                status=status,
                model_seconds=model_seconds,
                started=time.perf_counter() - (model_seconds or 0.0),
            )

        mirror(
            exchange.state.copies,
            exchange.state.http,
            shadow,
            share=copy_share(served, shadow),
            headers=headers,
            body=exchange.request.body,
            on_answer=answered,
        )


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
