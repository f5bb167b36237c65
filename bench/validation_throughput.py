"""Upload validation throughput: a ~1 GB CSV of the example problem through the prepare path.

Not a test. Generates the CSV in chunks (the churn generator, a small fraction of rows broken on purpose),
then times, in a fresh child process each so peak RSS is the step's own:

* ``library``: :func:`mlcycle.data.prepare.prepare_file` on the local file (read, check, write curated
  Parquet and quarantine rows), the work the Lambda does between download and upload;
* ``handler`` (``--handler``): the whole prepare-data function on the embedded AWS, triggered by an S3
  upload (download, check, upload, manifest, Glue partition, lineage, event), timed from the upload.

    .venv/bin/python bench/validation_throughput.py [--mb 1024] [--chunk-rows 100000] [--handler]
"""

from __future__ import annotations

import argparse
import json
import resource
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


def _child(step: str, path: Path, chunk_rows: int) -> dict[str, float]:
    """Run one step in a fresh interpreter; it prints its figures as JSON."""
    cmd = [sys.executable, __file__, "--child", step, "--path", str(path), "--chunk-rows", str(chunk_rows)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def run_library(path: Path, chunk_rows: int) -> dict[str, float]:
    from mlcycle.data.prepare import prepare_file
    from mlcycle.example.churn import contract

    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        started = time.perf_counter()
        sinks = prepare_file(path, contract(), Path(work), chunk_rows)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "curated": sinks.curated_rows, "quarantined": sinks.bad_rows}


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


def _child_main(step: str, path: Path, chunk_rows: int) -> None:
    figures = (run_library if step == "library" else run_handler)(path, chunk_rows)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=1024, help="size of the generated CSV (default 1024)")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--handler", action="store_true", help="also run the handler on the embedded AWS")
    parser.add_argument("--keep", type=Path, help="reuse/keep the CSV at this path")
    parser.add_argument("--child", choices=("library", "handler"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_main(args.child, args.path, args.chunk_rows)
        return
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-") as tmp:
        path = args.keep or Path(tmp) / "churn-1gb.csv"
        if not path.exists():
            started = time.perf_counter()
            rows = generate(path, args.mb)
            seconds = time.perf_counter() - started
            print(f"generated {rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB in {seconds:.0f}s")
        size_mb = path.stat().st_size / 1e6
        print(f"{'step':<10}{'rows':>13}{'seconds':>9}{'rows/s':>12}{'MB/s':>8}{'peak RSS MiB':>14}", end="")
        print("  curated / quarantined")
        for step in ("library", "handler") if args.handler else ("library",):
            f = _child(step, path, args.chunk_rows)
            total = f["curated"] + f["quarantined"]
            print(
                f"{step:<10}{total:>13,.0f}{f['seconds']:>9.1f}{total / f['seconds']:>12,.0f}"
                f"{size_mb / f['seconds']:>8.1f}{f['peak_rss_mb']:>14,.0f}"
                f"  {f['curated']:,.0f} / {f['quarantined']:,.0f}"
            )


if __name__ == "__main__":
    main()
