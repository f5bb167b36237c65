"""Serving throughput and latency: mlcycle's model server against the SageMaker scikit-learn container's.

Both stacks serve the same model artifact (the example churn model, trained by ``pipelines/train.py``
exactly as the training job trains it, with its ``code/inference*.py``), with 2 workers each, on this
machine, one after the other, under the same load from ``wrk``:

* ``container``: the scikit-learn container's serving stack, configured as the container runs it:
  gunicorn with gevent workers (``--worker-connections 1000 x workers``, timeout 60) serving the
  sagemaker-containers Flask ``Worker`` around the model's ``model_fn`` / ``transform_fn``
  (bench/sklearn_container_app.py), in its own venv ``bench/.venv-sklearn-container`` with the
  container's pinned versions (Flask 3.1.3, Werkzeug 3.1.8, gevent 26.5.0, gunicorn 26.0.0,
  sagemaker-containers 2.8.6.post2, protobuf 3.20.2) and its Dockerfile's patch of sagemaker-containers
  for Python 3.10+. The container also puts nginx in front of gunicorn; that is left out (it would only
  add a hop to the peer's side).
* ``mlcycle``: ``python -m mlcycle.serving.server`` (uvicorn, uvloop, httptools; workers forked after
  the model loads).

For each stack and body (1-row and 100-row CSV) and connection count (1, 8, 64): requests/s, p50 and p99
latency, and any non-2xx answers. Then: the CPU ceiling (the model's own decode + predict + encode in a
loop, one process per core), mlcycle's process start to a healthy ``/ping``, and what InvokeEndpoint
through the embedded AWS adds to a direct request to the model server.

    python bench/serving.py --setup        # once: the container's venv (~1 min), and wrk (apt-get)
    python bench/serving.py                # ~4 min: 3 rounds x 2 stacks x 2 bodies x 3 loads x 5 s, and more
    python bench/serving.py --seconds 10 --rounds 5 --connections 8 64
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # infra imports the CDK
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

CONTAINER_VENV = HERE / ".venv-sklearn-container"
#: The serving part of the container's requirements.txt (aws/sagemaker-scikit-learn-container, 1.9-0).
CONTAINER_PACKAGES = [
    "sagemaker-containers==2.8.6.post2",
    "Flask==3.1.3",
    "Werkzeug==3.1.8",
    "gevent==26.5.0",
    "gunicorn==26.0.0",
    "protobuf==3.20.2",
    "six==1.16.0",
    "scikit-learn==1.9.*",
    "pandas",
    "numpy",
    "joblib",
    "threadpoolctl",
]
RESULTS = HERE / "results"
WORKERS = 2
#: Requests per transform_many call for the batched CPU ceiling.
CEILING_BATCH = 8
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/csv"
local f = io.open(os.getenv("BENCH_BODY"), "rb"); wrk.body = f:read("*a"); f:close()
"""


# ---- setup ---------------------------------------------------------------------------------------------


def setup() -> None:
    if shutil.which("wrk") is None:
        print("installing wrk (Debian package) ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    if not (CONTAINER_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(CONTAINER_VENV)], check=True)
    print(f"installing the container's serving stack into {CONTAINER_VENV} ...", flush=True)
    pip = [str(CONTAINER_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    # The library's own metadata pins Flask 1.1.1; the container installs it, then its newer pins over it.
    subprocess.run([*pip, CONTAINER_PACKAGES[0]], check=True)
    subprocess.run([*pip, *CONTAINER_PACKAGES[1:]], check=True)
    # What the container's Dockerfile does: sagemaker-containers predates Python 3.10's collections.abc.
    site = subprocess.run(
        [
            str(CONTAINER_VENV / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    mapping = Path(site) / "sagemaker_containers" / "_mapping.py"
    mapping.write_text(mapping.read_text().replace("collections.Mapping", "collections.abc.Mapping"))


# ---- the model -----------------------------------------------------------------------------------------


def train_example_model(work: Path) -> Path:
    """The example model as the training job makes it: the source bundle's train.py on the churn data."""
    from infra.bundling import SOURCEDIR_ARCHIVE, SourceDirBundle
    from mlcycle.application.settings import example_settings
    from mlcycle.example import churn
    from mlcycle.training_sets import split

    settings = example_settings()
    code = work / "code"
    code.mkdir(parents=True)
    SourceDirBundle().write(work)
    with tarfile.open(work / SOURCEDIR_ARCHIVE) as archive:
        archive.extractall(code, filter="data")
    train, test = split(churn.generate(5000, seed=42), settings.problem)
    for name, part in (("train", train), ("test", test)):
        (work / "input" / name).mkdir(parents=True)
        part.to_parquet(work / "input" / name / "data.parquet")
    model = work / "ml" / "model"
    model.mkdir(parents=True)
    hyperparameters = {
        "mlcycle_problem": settings.problem.model_dump_json(),
        "mlcycle_tests": settings.model_tests.model_dump_json(),
    }
    env = {
        **os.environ,
        "SM_MODEL_DIR": str(model),
        "SM_OUTPUT_DATA_DIR": str(work / "output" / "data"),
        "SM_OUTPUT_DIR": str(work / "output"),
        "SM_CHANNEL_TRAIN": str(work / "input" / "train"),
        "SM_CHANNEL_TEST": str(work / "input" / "test"),
        "SM_HPS": json.dumps(hyperparameters),
    }
    subprocess.run([sys.executable, "train.py"], cwd=code, env=env, check=True, capture_output=True)
    return model


def bodies(work: Path) -> dict[str, Path]:
    from mlcycle.application.settings import example_settings
    from mlcycle.example import churn

    features = list(example_settings().problem.features)
    rows = churn.generate(100, seed=7)[features]
    out = {}
    for name, frame in (("1 row", rows.head(1)), ("100 rows", rows)):
        path = work / f"body-{len(frame)}.csv"
        path.write_text(frame.to_csv(header=False, index=False))
        out[name] = path
    return out


# ---- the servers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pinged(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=0.5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextmanager
def running(stack: str, model: Path, port: int) -> Iterator[float]:
    """Start a stack on ``port``; yield the seconds from process start to a healthy ``/ping``."""
    env = {
        **os.environ,
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": str(model / "code"),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(WORKERS),
    }
    if stack == "container":
        env["SAGEMAKER_BASE_DIR"] = str(model.parent)  # the library reads the model from {base}/model
        command = [
            str(CONTAINER_VENV / "bin" / "gunicorn"),
            *("--timeout", "60", "-k", "gevent", "-b", f"127.0.0.1:{port}"),
            *("--worker-connections", str(1000 * WORKERS), "-w", str(WORKERS), "--log-level", "warning"),
            "sklearn_container_app:main",
        ]
        cwd = HERE
    else:
        command = [
            sys.executable,
            "-m",
            "mlcycle.serving.server",
            "--model-dir",
            str(model),
            "--port",
            str(port),
        ]
        cwd = REPO
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not _pinged(port):
            if process.poll() is not None:
                raise RuntimeError(
                    f"{stack} exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}"
                )
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"{stack} did not answer /ping within 60 s")
            time.sleep(0.01)
        yield time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def warm(port: int, body: Path) -> None:
    """The container builds its app on a worker's first request: send enough to reach every worker."""
    data = body.read_bytes()
    for _ in range(20):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=data, headers={"Content-Type": "text/csv"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(port: int, body: Path, connections: int, seconds: int, script: Path) -> dict[str, float]:
    command = [
        "wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-s", str(script), f"http://127.0.0.1:{port}/invocations",
    ]  # fmt: skip
    out = subprocess.run(
        command, env={**os.environ, "BENCH_BODY": str(body)}, capture_output=True, text=True, check=True
    ).stdout

    def latency(percentile: str) -> float:
        found = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rate.group(1)) if rate else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": float(sum(int(g) for g in errors.groups())) if errors else 0.0,
    }


# ---- the ceiling and the embedded AWS's overhead -------------------------------------------------------


def cpu_ceiling(model: Path, body: Path, seconds: float = 3.0, batch: int = 1) -> float:
    """Requests/s if every core did nothing but the model's decode + predict + encode (no HTTP): one
    request at a time (``transform_fn``), or ``batch`` at a time (``transform_many``, as mlcycle's server
    predicts requests that arrive together)."""
    probe = f"""
import sys, time
sys.path.insert(0, {str(model / "code")!r})
import inference
m = inference.model_fn({str(model)!r})
body = open({str(body)!r}).read()
requests = [(body, "text/csv", "application/json")] * {batch}
def once():
    if {batch} == 1:
        inference.transform_fn(m, body, "text/csv", "application/json")
    else:
        inference.transform_many(m, requests)
for _ in range(20): once()
n, start = 0, time.perf_counter()
while time.perf_counter() - start < {seconds}:
    once(); n += {batch}
print(n / (time.perf_counter() - start))
"""
    runs = [
        subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE, text=True)
        for _ in range(WORKERS)
    ]
    return sum(float((run.communicate()[0] or "0").strip()) for run in runs)


def invoke_overhead(model: Path, body: Path, calls: int = 300) -> dict[str, float]:
    """Median latency of InvokeEndpoint through the embedded AWS and of a direct request to the same
    model server, called one after the other from one client."""
    import boto3

    from mlcycle.local import server

    aws = server.start(region="us-east-1")
    try:
        session = boto3.session.Session(region_name="us-east-1")
        s3, sagemaker = (session.client(s, endpoint_url=aws.endpoint_url) for s in ("s3", "sagemaker"))
        runtime = session.client("sagemaker-runtime", endpoint_url=aws.endpoint_url)
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "model.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                for path in model.rglob("*"):
                    tar.add(path, arcname=str(path.relative_to(model)))
            s3.create_bucket(Bucket="bench-models")
            s3.upload_file(str(archive), "bench-models", "model.tar.gz")
        sagemaker.create_model(
            ModelName="bench",
            ExecutionRoleArn="arn:aws:iam::123456789012:role/bench",
            PrimaryContainer={
                "Image": "sklearn",
                "ModelDataUrl": "s3://bench-models/model.tar.gz",
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                },
            },
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName="bench",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "bench",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        sagemaker.create_endpoint(EndpointName="bench", EndpointConfigName="bench")
        deadline = time.monotonic() + 120
        while sagemaker.describe_endpoint(EndpointName="bench")["EndpointStatus"] != "InService":
            if time.monotonic() > deadline:
                raise RuntimeError("the bench endpoint never came InService")
            time.sleep(0.2)
        data = body.read_bytes()

        def through_aws() -> bytes:
            answer = runtime.invoke_endpoint(EndpointName="bench", ContentType="text/csv", Body=data)
            return bytes(answer["Body"].read())

        through = _median_ms(through_aws, calls)
        url = _server_url(aws)
        request = lambda: urllib.request.urlopen(  # noqa: E731
            urllib.request.Request(url, data=data, headers={"Content-Type": "text/csv"}), timeout=30
        ).read()
        direct = _median_ms(request, calls) if url else float("nan")
        return {"invoke_endpoint_ms": through, "direct_ms": direct, "overhead_ms": through - direct}
    finally:
        aws.stop()


def _server_url(aws: Any) -> str:
    """The model server behind the bench endpoint, found through the embedded AWS's own listing."""
    try:
        from mlcycle.local.sagemaker import endpoints

        servers = endpoints.endpoint_servers("bench")
        return f"{next(iter(servers)).url}/invocations" if servers else ""
    except (ImportError, AttributeError, StopIteration, TypeError):
        return ""


def _median_ms(call: Any, calls: int) -> float:
    for _ in range(20):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


# ---- main ----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setup", action="store_true", help="create the container's venv, install wrk, exit")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run (default 5)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of both stacks, alternating (default 3)"
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--skip-invoke", action="store_true", help="skip the embedded AWS's overhead")
    args = parser.parse_args()
    if args.setup:
        setup()
        return 0
    if shutil.which("wrk") is None or not (CONTAINER_VENV / "bin" / "gunicorn").exists():
        print("run `python bench/serving.py --setup` first (the container's venv and wrk)", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-serving-") as tmp:
        work = Path(tmp)
        model = train_example_model(work)
        payloads = bodies(work)
        script = work / "post.lua"
        script.write_text(LUA)
        runs: list[dict[str, Any]] = []
        starts: dict[str, list[float]] = {"container": [], "mlcycle": []}
        for round_number in range(1, args.rounds + 1):  # rounds alternate the stacks, so drift hits both
            for stack in ("container", "mlcycle") if round_number % 2 else ("mlcycle", "container"):
                port = free_port()
                with running(stack, model, port) as start:
                    starts[stack].append(start)
                    for name, body in payloads.items():
                        warm(port, body)
                        for connections in args.connections:
                            result = wrk(port, body, connections, args.seconds, script)
                            runs.append(
                                {
                                    "round": round_number,
                                    "stack": stack,
                                    "body": name,
                                    "connections": connections,
                                    **result,
                                }
                            )
                            print(_line(runs[-1]), flush=True)
        table = medians(runs)
        ceilings = {name: cpu_ceiling(model, body) for name, body in payloads.items()}
        batched = {name: cpu_ceiling(model, body, batch=CEILING_BATCH) for name, body in payloads.items()}
        overhead = {} if args.skip_invoke else invoke_overhead(model, payloads["1 row"])
    start = {stack: statistics.median(times) for stack, times in starts.items()}
    report(table, ceilings=ceilings, batched=batched, starts=start, overhead=overhead, rounds=args.rounds)
    (RESULTS / "serving.json").write_text(
        json.dumps(
            {
                "runs": runs,
                "medians": table,
                "ceilings": ceilings,
                "batched_ceilings": batched,
                "starts": starts,
                "invoke": overhead,
            },
            indent=2,
        )
    )
    return 0


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per stack, body and load: the median of each figure over the rounds."""
    keys = sorted({(r["stack"], r["body"], r["connections"]) for r in runs}, key=lambda k: (k[0], k[1], k[2]))
    table = []
    for stack, body, connections in keys:
        same = [r for r in runs if (r["stack"], r["body"], r["connections"]) == (stack, body, connections)]
        figures = {
            f: statistics.median(r[f] for r in same)
            for f in ("rps", "p50_ms", "p99_ms", "non_2xx", "socket_errors")
        }
        table.append({"stack": stack, "body": body, "connections": connections, **figures})
    return table


def _line(row: dict[str, Any]) -> str:
    flags = f"  non-2xx {row['non_2xx']:.0f}" if row["non_2xx"] else ""
    flags += f"  socket errors {row['socket_errors']:.0f}" if row["socket_errors"] else ""
    where = f"round {row['round']} {row['stack']:<10} {row['body']:<9} c={row['connections']:<3}"
    return f"{where} {row['rps']:>9,.0f} req/s  p50 {row['p50_ms']:>8.2f} ms  p99 {row['p99_ms']:>8.2f} ms{flags}"


def report(
    table: list[dict[str, Any]],
    *,
    ceilings: dict[str, float],
    batched: dict[str, float],
    starts: dict[str, float],
    overhead: dict[str, float],
    rounds: int,
) -> None:
    print(
        f"\nmlcycle vs the container's stack (same model and load, 2 workers each; medians of {rounds} rounds):"
    )
    print(
        f"{'body':<9} {'conns':>5} {'container req/s':>16} {'mlcycle req/s':>14} {'ratio':>6}  p99 container / mlcycle"
    )
    for mine in (r for r in table if r["stack"] == "mlcycle"):
        peer = next(
            r
            for r in table
            if (r["stack"], r["body"], r["connections"]) == ("container", mine["body"], mine["connections"])
        )
        ratio = mine["rps"] / peer["rps"] if peer["rps"] else float("inf")
        figures = f"{peer['rps']:>16,.0f} {mine['rps']:>14,.0f} {ratio:>5.2f}x"
        print(
            f"{mine['body']:<9} {mine['connections']:>5} {figures}  {peer['p99_ms']:.1f} / {mine['p99_ms']:.1f} ms"
        )
    for name, ceiling in ceilings.items():
        best = max(r["rps"] for r in table if r["stack"] == "mlcycle" and r["body"] == name)
        print(
            f"CPU ceiling, {name}: {ceiling:,.0f} req/s one at a time, {batched[name]:,.0f} in batches of "
            f"{CEILING_BATCH} (decode + predict + encode in a loop on {WORKERS} cores); mlcycle's best "
            f"{best:,.0f}: the ceilings are {ceiling / best:.2f}x / {batched[name] / best:.2f}x that"
        )
    print(
        f"process start to a healthy /ping (median): mlcycle {starts['mlcycle']:.2f} s, "
        f"container {starts['container']:.2f} s (it loads the model on the first request)"
    )
    if overhead:
        print(
            f"InvokeEndpoint through the embedded AWS: median {overhead['invoke_endpoint_ms']:.2f} ms; a direct "
            f"request to the same model server {overhead['direct_ms']:.2f} ms: {overhead['overhead_ms']:.2f} ms added"
        )


if __name__ == "__main__":
    sys.exit(main())
