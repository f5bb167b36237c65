"""Fault injection in the embedded AWS: answer chosen requests with the errors AWS answers under load.

An :class:`InjectedFault` names a service (the signing name in the request's credential scope: ``s3``,
``dynamodb``, ``states``...), optionally an operation (``PutObject``, ``PutItem``...) and a text the
request's path must contain (a bucket, a table in the body), and how many matching requests fail. Each
failing request gets the service's own error shape, so SDK clients react as to AWS: boto3 retries S3's
``503 SlowDown`` and DynamoDB's ``ProvisionedThroughputExceededException`` with backoff, and gives up after
its attempts.

The faults sit in front of moto's server (a WSGI wrapper), so every client sees them: the Lambda functions'
execution environments, SageMaker jobs, the CLI and the tests.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mlcycle.local import context
from mlcycle.local.context import LocalContext

#: The credential scope of a SigV4 Authorization header: .../{date}/{region}/{service}/aws4_request.
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: S3 operations by method, for a request on an object (a key in the path) or on a bucket.
_S3_OBJECT = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
_S3_BUCKET = {"GET": "ListObjects", "PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}


@dataclass
class InjectedFault:
    """``times`` matching requests fail with ``code`` (HTTP ``status``); ``hits`` counts those that did."""

    service: str
    code: str
    status: int
    times: int
    operation: str | None = None
    contains: str | None = None
    message: str = "injected by the embedded AWS"
    hits: int = 0

    def matches(self, service: str, operation: str, path: str, body: bytes) -> bool:
        if service != self.service or (self.operation and operation != self.operation):
            return False
        return not self.contains or self.contains in path or self.contains.encode() in body


@dataclass
class FaultsState:
    """The injected faults, and moto's server application call they wrap."""

    original: Callable[..., Any]
    faults: list[InjectedFault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def inject(
    service: str,
    code: str,
    *,
    status: int,
    times: int,
    operation: str | None = None,
    contains: str | None = None,
) -> InjectedFault:
    """Make the next ``times`` matching requests fail; returns the fault (its ``hits`` grow as they do)."""
    fault = InjectedFault(service, code, status, times, operation, contains)
    state = context.installed(FaultsState)
    with state.lock:
        state.faults.append(fault)
    return fault


def slow_down(*, times: int, operation: str | None = None, bucket: str | None = None) -> InjectedFault:
    """S3 throttling: ``503 SlowDown``."""
    return inject("s3", "SlowDown", status=503, times=times, operation=operation, contains=bucket)


def throttle_dynamodb(*, times: int, operation: str | None = None, table: str | None = None) -> InjectedFault:
    """DynamoDB throttling: ``400 ProvisionedThroughputExceededException``."""
    code = "ProvisionedThroughputExceededException"
    return inject("dynamodb", code, status=400, times=times, operation=operation, contains=table)


def clear() -> None:
    """Remove every injected fault (spent or not)."""
    state = context.installed_or_none(FaultsState)
    if state is not None:
        with state.lock:
            state.faults.clear()


def _identify(environ: dict[str, Any], body: bytes) -> tuple[str, str, str]:
    """(service, operation, path) of a request, as far as faults need them."""
    match = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    service = match.group(1) if match else ""
    path = str(environ.get("PATH_INFO", ""))
    method = str(environ.get("REQUEST_METHOD", ""))
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target:
        operation = target.rsplit(".", 1)[-1]
    elif service == "s3":
        has_key = len([part for part in path.split("/") if part]) > 1
        operation = (_S3_OBJECT if has_key else _S3_BUCKET).get(method, method)
    else:  # the query protocols (SQS, SNS, IAM...) name the operation in an Action parameter
        text = f"{environ.get('QUERY_STRING', '')}&{body[:4096].decode('latin-1')}"
        found = re.search(r"Action=([A-Za-z]+)", text)
        operation = found.group(1) if found else method
    return service, operation, path


def _error(service: str, fault: InjectedFault) -> tuple[str, bytes, str]:
    """Status line, body and content type in the service's protocol."""
    status = f"{fault.status} {'Service Unavailable' if fault.status == 503 else 'Error'}"
    if service == "s3":
        xml = f"<Error><Code>{fault.code}</Code><Message>{fault.message}</Message></Error>"
        return status, xml.encode(), "application/xml"
    body = {"__type": f"com.amazonaws.{service}#{fault.code}", "message": fault.message}
    return status, json.dumps(body).encode(), "application/x-amz-json-1.0"


def _wrapped(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(app: Any, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        state = context.installed_or_none(FaultsState)
        if state is None or not state.faults:
            return original(app, environ, start_response)  # type: ignore[no-any-return]
        body = _read_body(environ)
        service, operation, path = _identify(environ, body)
        with state.lock:
            fault = next(
                (f for f in state.faults if f.hits < f.times and f.matches(service, operation, path, body)),
                None,
            )
            if fault is not None:
                fault.hits += 1
        if fault is None:
            return original(app, environ, start_response)  # type: ignore[no-any-return]
        status, payload, content_type = _error(service, fault)
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(payload)))])
        return [payload]

    return call


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back for moto (the WSGI input stream can be read once)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


def install(ctx: LocalContext) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    uninstall_from(ctx)
    original = DomainDispatcherApplication.__call__
    ctx.services[FaultsState] = FaultsState(original=original)
    setattr(DomainDispatcherApplication, "__call__", _wrapped(original))  # noqa: B010 - wrapping a method


def uninstall() -> None:
    ctx = context.running()
    if ctx is not None:
        uninstall_from(ctx)


def uninstall_from(ctx: LocalContext) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    state = ctx.services.pop(FaultsState, None)
    if state is not None:
        setattr(DomainDispatcherApplication, "__call__", state.original)  # noqa: B010
