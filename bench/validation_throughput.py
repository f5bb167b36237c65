"""Upload validation throughput: a ~1 GB CSV of the example problem through the prepare path.

Not a test. Generates the CSV in chunks (the churn generator, a small fraction of rows broken on purpose),
then times, in a fresh child process each so peak RSS (``VmHWM``) is the step's own:

* ``floor``: Arrow reads the CSV (``pyarrow.csv.open_csv``, types inferred) and writes it as Parquet,
  with no checks: the least any validation that writes Parquet can cost;
* ``library``: :func:`mlcycle.data.prepare.prepare_file` on the local file (read, check, write curated
  Parquet and quarantine rows), the work the Lambda does between download and upload;
* ``pandera``: pandera 0.33 checking the same contract (types by coercion, nullability, ranges,
  categories, unique key) on pandas chunks of ``--chunk-rows``, good rows written as Parquet, in
  bench/.venv-pandera (pandas<3);
* ``handler`` (``--handler``): the whole prepare-data function on the embedded AWS, triggered by an S3
  upload (download, check, upload, manifest, Glue partition, lineage, event), timed from the upload.

Floor and library run on one thread and with Arrow's threads (both cores); pandera is single-threaded.

    .venv/bin/python bench/validation_throughput.py --setup     # once: bench/.venv-pandera
    .venv/bin/python bench/validation_throughput.py [--mb 1024] [--chunk-rows 100000] [--handler]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BROKEN_FRACTION = 0.001  # one row in a thousand breaks a rule
ROWS_PER_CHUNK = 250_000
PANDERA_VENV = Path(__file__).resolve().parent / ".venv-pandera"
PANDERA_PACKAGES = ["pandera==0.33.1", "pandas<3", "pyarrow"]


def generate(path: Path, target_mb: int) -> int:
    """Write chunks of generated rows until the file reaches ``target_mb``; return the row count."""
    from mlcycle.example.churn import generate as churn

    rows, seed = 0, 0
    with path.open("w", encoding="utf-8") as out:
        while path.stat().st_size < target_mb * 1024 * 1024:
            frame = churn(ROWS_PER_CHUNK, seed=seed).astype({"age": "string"})
            rng = np.random.default_rng(seed)
            broken = rng.random(len(frame)) < BROKEN_FRACTION
            frame.loc[broken, "tenure_months"] = -1  # breaks the range rule
            frame.to_csv(out, header=seed == 0, index=False)
            out.flush()
            rows += len(frame)
            seed += 1
    return rows


def _child(step: str, path: Path, chunk_rows: int, threads: bool) -> dict[str, float]:
    """Run one step in a fresh interpreter; it prints its figures as JSON."""
    python = sys.executable
    if step == "pandera":
        python = str(PANDERA_VENV / "bin" / "python")
        if not Path(python).exists():
            raise SystemExit(f"{python} is missing: run `python bench/validation_throughput.py --setup`")
    cmd = [python, __file__, "--child", step, "--path", str(path), "--chunk-rows", str(chunk_rows)]
    cmd += ["--threads"] if threads else []
    if step == "pandera":
        from mlcycle.example.churn import contract

        cmd += ["--contract", contract().model_dump_json()]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{step} failed:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def run_floor(path: Path, threads: bool) -> dict[str, float]:
    """Arrow alone: read the CSV (types inferred) and write Parquet, batch by batch, no checks."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        started = time.perf_counter()
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(use_threads=threads, block_size=8 << 20))
        rows, writer = 0, None
        for batch in reader:
            if writer is None:
                writer = pq.ParquetWriter(Path(work) / "floor.parquet", batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
        if writer is not None:
            writer.close()
        return {"seconds": time.perf_counter() - started, "curated": rows, "quarantined": 0}


def run_library(path: Path, chunk_rows: int, threads: bool) -> dict[str, float]:
    from mlcycle.data.prepare import prepare_file
    from mlcycle.example.churn import contract

    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        started = time.perf_counter()
        sinks = prepare_file(path, contract(), Path(work), chunk_rows, use_threads=threads)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "curated": sinks.curated_rows, "quarantined": sinks.bad_rows}


def run_pandera(path: Path, chunk_rows: int, contract_json: str) -> dict[str, float]:
    """pandera checking the same contract chunk by chunk; the rows it fails are dropped, the rest
    written as Parquet (runs in bench/.venv-pandera: it imports nothing of mlcycle)."""
    import numpy as np
    import pandas as pd
    import pandera.pandas as pa
    import pyarrow as arrow
    import pyarrow.parquet as pq

    spec = json.loads(contract_json)
    dtypes = {"string": str, "int": "Int64", "float": "Float64", "bool": "boolean"}
    columns = {}
    for c in spec["columns"]:
        checks = []
        if c["min"] is not None:
            checks.append(pa.Check.ge(c["min"]))
        if c["max"] is not None:
            checks.append(pa.Check.le(c["max"]))
        if c["categories"] is not None:
            checks.append(pa.Check.isin(c["categories"]))
        dtype = dtypes.get(c["type"], pd.DatetimeTZDtype(tz="UTC"))
        columns[c["name"]] = pa.Column(
            dtype, checks=checks, nullable=c["nullable"], unique=c["name"] == spec["key"], coerce=True
        )
    schema = pa.DataFrameSchema(columns)
    seen: set[str] = set()
    curated = quarantined = 0
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        started = time.perf_counter()
        writer = None
        for text in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunk_rows):
            chunk = text.replace("", None)
            try:
                good = schema.validate(chunk, lazy=True)
            except pa.errors.SchemaErrors as exc:
                failed = exc.failure_cases["index"].dropna().unique()
                kept = chunk.drop(index=failed)
                good = schema.validate(kept, lazy=True)  # the rows left coerce to the schema's types
            # The key across chunks, as mlcycle does; a set lookup per key (Series.isin(set) would
            # rebuild the set's hash table every chunk, quadratic in the file).
            repeated = np.array([k in seen for k in good[spec["key"]]], dtype=bool)
            good = good[~repeated]
            seen.update(good[spec["key"]])
            table = arrow.Table.from_pandas(good, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(Path(work) / "pandera.parquet", table.schema)
            writer.write_table(table.cast(writer.schema))
            curated += len(good)
            quarantined += len(chunk) - len(good)
        if writer is not None:
            writer.close()
        return {"seconds": time.perf_counter() - started, "curated": curated, "quarantined": quarantined}


def run_handler(path: Path, chunk_rows: int) -> dict[str, float]:
    """The prepare-data function on the embedded AWS, from the S3 upload to the manifest."""
    import boto3

    from infra.app_builder import synth
    from mlcycle.application.settings import resolve_settings
    from mlcycle.config import LambdaSettings
    from mlcycle.data.manifests import manifest_keys, read_manifest
    from mlcycle.local.session import local_platform

    # A threshold above the file keeps the upload on the single-function path being measured.
    settings = resolve_settings().model_copy(update={"functions": LambdaSettings(large_upload_bytes=1 << 40)})
    with tempfile.TemporaryDirectory() as assembly:
        synth(settings, Path(assembly))
        with local_platform(settings, Path(assembly)) as local:
            s3 = boto3.client("s3", endpoint_url=local.aws.endpoint_url, region_name=settings.region)
            bucket = local.platform.curated_bucket
            started = time.perf_counter()
            s3.upload_file(str(path), local.platform.landing_bucket, "uploads/churn/bench.csv")
            while not manifest_keys(s3, bucket, "churn"):
                time.sleep(0.5)
            seconds = time.perf_counter() - started
            manifest = read_manifest(s3, bucket, manifest_keys(s3, bucket, "churn")[0]["Key"])
            return {
                "seconds": seconds,
                "curated": manifest.curated_rows,
                "quarantined": manifest.quarantined_rows,
            }


def _child_main(step: str, path: Path, chunk_rows: int, threads: bool, contract_json: str) -> None:
    if not threads:
        import pyarrow as pa

        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)
    if step == "floor":
        figures = run_floor(path, threads)
    elif step == "library":
        figures = run_library(path, chunk_rows, threads)
    elif step == "pandera":
        figures = run_pandera(path, chunk_rows, contract_json)
    else:
        figures = run_handler(path, chunk_rows)
    figures["peak_rss_mb"] = _peak_mib()
    print(json.dumps(figures))


def _peak_mib() -> float:
    """``VmHWM``: this process's own peak (``ru_maxrss`` would count the parent's size at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def setup() -> None:
    if not (PANDERA_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PANDERA_VENV)], check=True)
    pip = [str(PANDERA_VENV / "bin" / "python"), "-m", "pip", "install", "-q", *PANDERA_PACKAGES]
    subprocess.run(pip, check=True)
    print(f"ready: {PANDERA_VENV}")


def _ratios(seconds: dict[tuple[str, bool], float]) -> None:
    """mlcycle against the floor at the same thread count, and pandera against mlcycle."""
    for threads, name in ((False, "1 thread"), (True, "threads")):
        ours, floor = seconds.get(("library", threads)), seconds.get(("floor", threads))
        if ours and floor:
            print(f"mlcycle / floor ({name}): {ours / floor:.2f}x the floor's time (target <= 2x)")
    pandera = seconds.get(("pandera", False))
    for threads, name in ((False, "1 thread"), (True, "threads")):
        ours = seconds.get(("library", threads))
        if pandera and ours:
            print(f"pandera / mlcycle ({name}): {pandera / ours:.1f}x (target >= 10x)")


STEPS = ("floor", "library", "pandera")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=1024, help="size of the generated CSV (default 1024)")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--handler", action="store_true", help="also run the handler on the embedded AWS")
    parser.add_argument("--keep", type=Path, help="reuse/keep the CSV at this path")
    parser.add_argument("--setup", action="store_true", help="create bench/.venv-pandera and exit")
    parser.add_argument("--skip", action="append", default=[], choices=STEPS, help="leave a step out")
    parser.add_argument("--child", choices=(*STEPS, "handler"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contract", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    if args.child:
        _child_main(args.child, args.path, args.chunk_rows, args.threads, args.contract)
        return
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-") as tmp:
        path = args.keep or Path(tmp) / "churn-1gb.csv"
        if not path.exists():
            started = time.perf_counter()
            rows = generate(path, args.mb)
            seconds = time.perf_counter() - started
            print(f"generated {rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB in {seconds:.0f}s")
        size_mb = path.stat().st_size / 1e6
        print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        print(f"{'step':<18}{'rows':>13}{'seconds':>9}{'rows/s':>12}{'MB/s':>8}{'peak RSS MiB':>14}", end="")
        print("  curated / quarantined")
        runs = [(s, t) for t in (False, True) for s in ("floor", "library") if s not in args.skip]
        runs += [("pandera", False)] if "pandera" not in args.skip else []
        runs += [("handler", True)] if args.handler else []
        seconds: dict[tuple[str, bool], float] = {}
        for step, threads in runs:
            f = _child(step, path, args.chunk_rows, threads)
            seconds[(step, threads)] = f["seconds"]
            total = f["curated"] + f["quarantined"]
            label = (
                step if step in ("pandera", "handler") else f"{step} ({'threads' if threads else '1 thread'})"
            )
            print(
                f"{label:<18}{total:>13,.0f}{f['seconds']:>9.1f}{total / f['seconds']:>12,.0f}"
                f"{size_mb / f['seconds']:>8.1f}{f['peak_rss_mb']:>14,.0f}"
                f"  {f['curated']:,.0f} / {f['quarantined']:,.0f}"
            )
        _ratios(seconds)


if __name__ == "__main__":
    main()
