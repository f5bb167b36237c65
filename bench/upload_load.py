"""Load: many uploads at once through the local platform, every row accounted for, with the time it took.

Not a test. Synthesizes the app, provisions it into an embedded AWS, then puts ``--uploads`` CSV files of
``--rows`` rows each into the landing bucket from 32 threads at once (one row in ``--bad-every`` broken).
Each upload runs the prepare-data function (its own execution environments, up to their concurrency),
then feature ingestion. The script waits for every manifest and every queued invocation, then checks:

* every upload has a manifest whose rows = curated + quarantined, and the totals match what was sent;
* every upload was announced once (``DatasetValidated``) and ingested once (``FeaturesIngested``).

It prints the wall time from the first put to the last manifest and to the end of ingestion.

    .venv/bin/python bench/upload_load.py [--uploads 200] [--rows 200] [--bad-every 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def bodies(uploads: int, rows: int, bad_every: int) -> list[tuple[str, bytes, int]]:
    """(key, CSV body, broken rows) per upload."""
    from mlcycle.example import churn

    out = []
    for n in range(uploads):
        frame = churn.generate(rows, seed=1000 + n).astype({"age": "string"})
        broken = list(range(0, rows, bad_every)) if bad_every else []
        frame.loc[broken, "age"] = "old"
        out.append((f"uploads/churn/load-{n:04d}.csv", frame.to_csv(index=False).encode(), len(broken)))
    return out


def run(uploads: int, rows: int, bad_every: int) -> int:
    from infra.app_builder import synth
    from mlcycle.application.settings import example_settings
    from mlcycle.data.manifests import MANIFEST_PREFIX, read_manifest
    from mlcycle.data.prepare import Upload
    from mlcycle.local.awslambda import wait_for_async
    from mlcycle.local.session import bus_listener, local_platform

    settings = example_settings()
    files = bodies(uploads, rows, bad_every)
    with tempfile.TemporaryDirectory() as out:
        print("synthesizing the app ...", flush=True)
        template = synth(settings, out)
        with local_platform(settings, template.parent) as local:
            c, p = local.clients, local.platform
            drain = bus_listener(local, "load-events")
            print(f"putting {uploads} uploads of {rows} rows from 32 threads ...", flush=True)
            started = time.monotonic()

            def put(item: tuple[str, bytes, int]) -> str:
                put = c.s3.put_object(Bucket=p.landing_bucket, Key=item[0], Body=item[1])
                return Upload(p.landing_bucket, item[0], put.get("VersionId")).upload_id

            with ThreadPoolExecutor(32) as pool:
                ids = list(pool.map(put, files))
            expected = {f"{MANIFEST_PREFIX}churn/{upload_id}.json" for upload_id in ids}
            while True:
                listed = c.s3.list_objects_v2(Bucket=p.curated_bucket, Prefix=f"{MANIFEST_PREFIX}churn/")
                found = {o["Key"] for o in listed.get("Contents", [])} & expected
                if found == expected:
                    break
                if time.monotonic() - started > 1800:
                    print(f"FAILED: {len(found)} of {uploads} manifests after 30 minutes")
                    return 1
                time.sleep(0.5)
            manifests_at = time.monotonic() - started
            wait_for_async(timeout=1800)
            settled_at = time.monotonic() - started
            manifests = [read_manifest(c.s3, p.curated_bucket, key) for key in sorted(expected)]
            events = drain()
    return report(
        uploads=uploads,
        rows=rows,
        files=files,
        ids=ids,
        manifests=manifests,
        events=events,
        manifests_at=manifests_at,
        settled_at=settled_at,
    )


def report(
    *,
    uploads: int,
    rows: int,
    files: list[tuple[str, bytes, int]],
    ids: list[str],
    manifests: list[Any],
    events: list[dict[str, Any]],
    manifests_at: float,
    settled_at: float,
) -> int:
    sent_rows, sent_bad = uploads * rows, sum(f[2] for f in files)
    got_rows = sum(m.rows for m in manifests)
    curated, quarantined = sum(m.curated_rows for m in manifests), sum(m.quarantined_rows for m in manifests)
    by_kind = Counter((e["detail-type"], e["detail"].get("upload_id")) for e in events)
    validated = [by_kind[("DatasetValidated", upload_id)] for upload_id in ids]
    ingested = [by_kind[("FeaturesIngested", upload_id)] for upload_id in ids]
    problems = []
    if got_rows != sent_rows or curated + quarantined != sent_rows or quarantined != sent_bad:
        problems.append(
            f"rows: sent {sent_rows} ({sent_bad} broken), manifests {got_rows} = {curated} + {quarantined}"
        )
    if any(m.rows != m.curated_rows + m.quarantined_rows for m in manifests):
        problems.append("a manifest's rows are not curated + quarantined")
    if set(validated) != {1}:
        problems.append(f"DatasetValidated per upload: {Counter(validated)}")
    if set(ingested) != {1}:
        problems.append(f"FeaturesIngested per upload: {Counter(ingested)}")
    print(f"{uploads} uploads, {sent_rows} rows ({sent_bad} broken)")
    print(
        f"  all manifests written: {manifests_at:.1f} s ({uploads / manifests_at:.1f} uploads/s, {sent_rows / manifests_at:.0f} rows/s)"
    )
    print(f"  features ingested, nothing queued: {settled_at:.1f} s")
    print(f"  rows accounted for: {curated} curated + {quarantined} quarantined = {curated + quarantined}")
    print(f"  announced once: {validated.count(1)}/{uploads}; ingested once: {ingested.count(1)}/{uploads}")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--uploads", type=int, default=200, help="uploads put at once (default 200)")
    parser.add_argument("--rows", type=int, default=200, help="rows per upload (default 200)")
    parser.add_argument("--bad-every", type=int, default=100, help="one broken row in this many (0: none)")
    args = parser.parse_args()
    return run(args.uploads, args.rows, args.bad_every)


if __name__ == "__main__":
    raise SystemExit(main())
