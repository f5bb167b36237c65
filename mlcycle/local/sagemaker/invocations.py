"""InvokeEndpoint in the embedded AWS: the request goes to a live model server of the endpoint (by
``TargetVariant`` or by weight), its answer comes back, and the exchange is captured."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import urllib3

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
    state: EndpointsState,
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
