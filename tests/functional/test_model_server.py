"""mlcycle's model server over real HTTP: the contract's statuses, concurrent requests predicted together
get their own answers, and the worker processes stop with the server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlcycle.config import Settings
from tests.models import CSV_ROW, ROW, example_model_dir

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    model = example_model_dir(tmp_path_factory.mktemp("served"), settings)
    port = _free_port()
    env = {**os.environ, "SAGEMAKER_PROGRAM": "inference.py", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "mlcycle.serving.server",
        "--model-dir",
        str(model),
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=1).read()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            time.sleep(0.05)
    yield url, process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def _post(
    url: str, body: str, content_type: str = "text/csv", accept: str | None = None
) -> tuple[int, str, str]:
    headers = {"Content-Type": content_type} | ({"Accept": accept} if accept else {})
    request = urllib.request.Request(f"{url}/invocations", data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "fragment"),
    [
        (CSV_ROW, "text/csv", None, 200, '"predictions"'),
        (CSV_ROW, "text/csv", "text/csv;q=0.9, application/json;q=0.1", 200, ","),
        (json.dumps(ROW), "application/json", None, 200, '"probabilities"'),
        (CSV_ROW, "text/plain", None, 415, "unsupported content type"),
        (CSV_ROW, "text/csv", "image/png", 406, "cannot answer"),
        ("1,2", "text/csv", None, 400, "row 1 has 2 values"),
        ("", "text/csv", None, 400, "empty body"),
    ],
)
def test_statuses_over_http(
    server: tuple[str, subprocess.Popen[bytes]],
    body: str,
    content_type: str,
    accept: str | None,
    status: int,
    fragment: str,
) -> None:
    got_status, _, text = _post(server[0], body, content_type, accept)
    assert (got_status, fragment in text) == (status, True), text


def test_concurrent_requests_each_get_their_own_answer(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    # GIVEN a mix of good and bad requests, each answered alone first
    cases = [(CSV_ROW.replace("12", str(i), 1), "text/csv") for i in range(30)]
    cases += [("1,2", "text/csv"), (json.dumps(ROW | {"age": "old"}), "application/json")] * 5
    alone = [_post(server[0], body, content_type) for body, content_type in cases]
    # WHEN they are sent all at once (the server predicts requests that arrive together in one call)
    with ThreadPoolExecutor(max_workers=16) as pool:
        together = list(pool.map(lambda case: _post(server[0], *case), cases * 3))
    # THEN every answer is the one that request got alone
    assert together == alone * 3


def test_the_server_stops_with_its_workers(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    _, process = server
    children = subprocess.run(
        ["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) == 2  # one worker per --workers
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_requests_that_arrive_together_share_one_prediction() -> None:
    import asyncio

    from mlcycle.serving.app import create_app
    from mlcycle.serving.handlers import InferenceHandler

    # GIVEN a model that can predict several requests at once, and records how it was called
    batches: list[int] = []

    def transform_fn(model: object, body: str | bytes, content_type: str, accept: str) -> tuple[str, str]:
        batches.append(1)
        return f"alone {body!r}", "text/plain"

    def transform_many(model: object, requests: list[tuple[str | bytes, str, str]]) -> list[object]:
        batches.append(len(requests))
        return [
            ValueError("no") if body == "bad" else (f"got {body}", "text/plain") for body, _, _ in requests
        ]

    handler = InferenceHandler(
        model=None,
        input_fn=lambda body, content_type: body,
        predict_fn=lambda data, model: data,
        output_fn=lambda prediction, accept: prediction,
        transform_fn=transform_fn,
        transform_many=transform_many,
    )
    app = create_app(handler)

    async def call(body: str) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/invocations",
            "headers": [(b"content-type", b"text/csv")],
        }
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body.encode(), "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(sent[0]["status"]), bytes(sent[1]["body"])  # type: ignore[call-overload]

    async def scenario() -> tuple[list[tuple[int, bytes]], tuple[int, bytes]]:
        together = await asyncio.gather(*(call(str(i)) for i in range(5)), call("bad"))
        alone = await call("7")
        return list(together), alone

    # WHEN six requests arrive in the same turn of the loop, then one alone
    together, alone = asyncio.run(scenario())
    # THEN the six share one prediction, each gets its own answer (or its own error), and the lone one
    # is answered without waiting for company
    assert batches == [6, 1]
    assert together == [(200, f"got {i}".encode()) for i in range(5)] + [(500, b"ValueError: no")]
    assert alone == (200, b"alone '7'")
