"""Point-in-time training sets: mlcycle's feature store side by side with Feast and a polars join_asof.

Not a test. One run generates one data set (2 feature views of ~1M rows over 10k entities and 30 days,
TTLs 1 day and 6 hours) and entity rows (100k and 1M by default), writes them as Parquet, then runs each
engine in its own subprocess on identical files, and prints times, peak memory (the child's max RSS) and
ratios, after checking that the engines return the same rows.

    python bench/pit_join.py --setup          # once: bench/.venv-feast with feast[duckdb], pandas<3, polars
    python bench/pit_join.py                  # 100k and 1M entity rows, every engine
    python bench/pit_join.py --entity-rows 100000 --skip feast-file

mlcycle runs in the project's venv (pandas 3): ``mlcycle`` with the store's default engine (sorted search),
``mlcycle-duckdb`` with ``engine="duckdb"`` (the SQL builder's ASOF text). Feast and polars run in
bench/.venv-feast (Feast does not import with pandas 3). Every engine starts from the same Parquet files
and ends with an Arrow table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FEAST_VENV = HERE / ".venv-feast"
FEAST_PACKAGES = ["feast[duckdb]", "pandas<3", "polars", "pyarrow", "duckdb"]
#: ``mlcycle`` is the store as ingestion leaves it: the default (embedded sorted-search) engine over each
#: view's snapshot; ``mlcycle-partitions`` the same engine over the Parquet partitions (views with
#: ``compact=False``); ``mlcycle-duckdb`` the SQL builder's text run by DuckDB (``engine="duckdb"``).
ENGINES = ("mlcycle", "mlcycle-partitions", "mlcycle-duckdb", "polars", "feast-duckdb", "feast-file")
VIEWS = {"profile": 86_400, "activity": 6 * 3_600}  # name -> TTL seconds
START = "2026-01-01T00:00:00"


# --- data ---------------------------------------------------------------------------------------------


def generate(work: Path, args: argparse.Namespace) -> None:
    """Views with unique (entity, event time) pairs, so every engine's tie rule gives the same answer."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    view_rows, entities, days, seed = args.view_rows, args.entities, args.days, args.seed
    rng = np.random.default_rng(seed)
    start = np.datetime64(START, "s").astype(np.int64)
    ts = pa.timestamp("us", tz="UTC")
    ids = np.array([f"c{i:05d}" for i in range(entities)])
    for name in VIEWS:
        key = rng.integers(0, entities, view_rows).astype(np.int64)
        second = rng.integers(0, days * 86_400, view_rows).astype(np.int64)
        _, unique = np.unique(key * 10**8 + second, return_index=True)
        key, second = key[unique], second[unique]
        n = len(key)
        table = pa.table(
            {
                "customer_id": ids[key],
                "event_time": pa.array((start + second) * 1_000_000, ts),
                f"{name}_x": rng.normal(0, 1, n),
                f"{name}_n": rng.integers(0, 1000, n),
                f"{name}_c": np.array(["a", "b", "c", "d", "e", "f", "g", "h"])[rng.integers(0, 8, n)],
                "ingested_at": pa.array(np.full(n, start * 1_000_000), ts),
            }
        )
        pq.write_table(table, work / f"{name}.parquet")
        _write_offline(work, name, table)
    for rows in args.entity_rows:
        entity = pa.table(
            {
                "row_id": np.arange(rows, dtype=np.int64),
                "customer_id": ids[rng.integers(0, entities, rows)],
                "event_timestamp": pa.array((start + rng.integers(0, days * 86_400, rows)) * 1_000_000, ts),
            }
        )
        pq.write_table(entity, work / f"entity_{rows}.parquet")


def _write_offline(work: Path, name: str, table: Any) -> None:
    """The same rows in mlcycle's offline layout: ``{view}/event_date=YYYY-MM-DD/{batch}.parquet``."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dates = pc.strftime(table["event_time"], format="%Y-%m-%d")
    for day in sorted(set(dates.to_pylist())):
        path = work / "offline" / name / f"event_date={day}" / "bench.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pc.equal(dates, day)), path, compression="zstd")


def _features(name: str) -> list[str]:
    return [f"{name}_x", f"{name}_n", f"{name}_c"]


# --- engines (each runs in a child process) ---------------------------------------------------------------


def mlcycle_store(work: Path, engine: Any = "search", *, compact: bool = True) -> Any:
    """mlcycle's feature store over the benchmark's offline layout, with its two views."""
    from mlcycle.config import ColumnSpec, DatasetContract, FeatureSpec, FeatureViewSpec
    from mlcycle.features import FeatureStore, LocalObjects, OfflineStore

    kinds = {"x": "float", "n": "int", "c": "string"}
    views = [
        FeatureViewSpec(
            name=name,
            entity_keys=("customer_id",),
            event_timestamp="event_time",
            features=tuple(FeatureSpec(name=f, type=kinds[f[-1]]) for f in _features(name)),  # type: ignore[arg-type]
            ttl_seconds=ttl,
            source="bench",
            compact=compact,
        )
        for name, ttl in VIEWS.items()
    ]
    columns = [ColumnSpec(name="customer_id", type="string"), ColumnSpec(name="event_time", type="timestamp")]
    columns += [ColumnSpec(name=f.name, type=f.type) for v in views for f in v.features]
    contract = DatasetContract(name="bench", columns=tuple(columns))
    offline = OfflineStore(LocalObjects(work / "offline"))
    return FeatureStore(views, {"bench": contract}, offline=offline, engine=engine)


def compact(work: Path) -> float:
    """What ingestion does after each batch: rebuild every view's snapshot. Returns the seconds taken."""
    store = mlcycle_store(work)
    started = time.perf_counter()
    for view in store.views:
        store.offline.compact(view, store.contract(view))
    return time.perf_counter() - started


def run_mlcycle(work: Path, rows: int, engine: Any, *, compact: bool = True) -> Any:
    import duckdb  # noqa: F401  (imported here so that the timed runs exclude imports, as for the others)
    import numpy  # noqa: F401
    import pyarrow.parquet as pq

    store = mlcycle_store(work, engine, compact=compact)

    def job() -> Any:
        entity = pq.read_table(work / f"entity_{rows}.parquet")
        return store.get_historical_features(entity)

    return job


def run_polars(work: Path, rows: int) -> Any:
    import polars as pl

    def job() -> Any:
        entity = pl.read_parquet(work / f"entity_{rows}.parquet").sort("event_timestamp")
        out = entity
        for name, ttl in VIEWS.items():
            view = pl.read_parquet(work / f"{name}.parquet").drop("ingested_at").sort("event_time")
            out = out.join_asof(
                view,
                left_on="event_timestamp",
                right_on="event_time",
                by="customer_id",
                strategy="backward",
                tolerance=f"{ttl}s",
                check_sortedness=False,
            ).drop("event_time")
        return out.sort("row_id").to_arrow()

    return job


def run_feast(work: Path, rows: int, offline: str) -> Any:
    import logging
    import warnings
    from datetime import timedelta

    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
    from feast.types import Float64, Int64, String

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    repo = work / f"feast-{offline}-{rows}"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    config = RepoConfig(
        project="bench",
        provider="local",
        registry=str(repo / "registry.db"),
        repo_path=str(repo),
        offline_store={"type": offline},
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    customer = Entity(name="customer", join_keys=["customer_id"])
    kinds = {"x": Float64, "n": Int64, "c": String}
    views = [
        FeatureView(
            name=name,
            entities=[customer],
            ttl=timedelta(seconds=ttl),
            schema=[Field(name=f, dtype=kinds[f[-1]]) for f in _features(name)],
            source=FileSource(path=str(work / f"{name}.parquet"), timestamp_field="event_time"),
        )
        for name, ttl in VIEWS.items()
    ]
    store.apply([customer, *views])
    refs = [f"{name}:{f}" for name in VIEWS for f in _features(name)]

    def job() -> Any:
        entity = pd.read_parquet(work / f"entity_{rows}.parquet")
        return store.get_historical_features(entity_df=entity, features=refs).to_arrow()

    return job


def child(engine: str, work: Path, rows: int, repeat: int) -> None:
    """Run one engine ``repeat`` times; print one JSON line; keep its result for the agreement check."""
    import pyarrow.parquet as pq

    started = time.perf_counter()
    if engine == "mlcycle":
        job = run_mlcycle(work, rows, "search")
    elif engine == "mlcycle-partitions":
        job = run_mlcycle(work, rows, "search", compact=False)
    elif engine == "mlcycle-duckdb":
        job = run_mlcycle(work, rows, "duckdb")
    elif engine == "polars":
        job = run_polars(work, rows)
    else:
        job = run_feast(work, rows, engine.removeprefix("feast-"))
    setup = time.perf_counter() - started
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = job()
        times.append(time.perf_counter() - t)
    keep = ["row_id", *(f for name in VIEWS for f in _features(name))]
    pq.write_table(result.select(keep), work / f"result-{engine}-{rows}.parquet")
    peak_kib = _peak_rss_kib()
    print(
        json.dumps(
            {
                "seconds": min(times),
                "all": times,
                "setup": setup,
                "rows": result.num_rows,
                "peak_mib": peak_kib / 1024,
            }
        )
    )


def _peak_rss_kib() -> int:
    """This process's peak resident set. Linux's ``ru_maxrss`` starts from the parent's size at fork and
    survives exec, so it would count the parent's data; ``VmHWM`` belongs to this process's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- the parent: setup, runs, table -------------------------------------------------------------------


def setup() -> None:
    if not (FEAST_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(FEAST_VENV)], check=True)
    pip = [str(FEAST_VENV / "bin" / "python"), "-m", "pip", "install", "-q", *FEAST_PACKAGES]
    subprocess.run(pip, check=True)
    print(f"ready: {FEAST_VENV}")


def _python(engine: str) -> str:
    if engine.startswith("mlcycle"):
        return sys.executable
    python = FEAST_VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `python bench/pit_join.py --setup` first")
    return str(python)


def measure(engine: str, work: Path, rows: int, repeat: int, timeout: float) -> dict[str, Any]:
    command = [
        _python(engine),
        __file__,
        "--child",
        engine,
        "--work",
        str(work),
        "--rows",
        str(rows),
        "--repeat",
        str(repeat),
    ]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def agreement(work: Path, rows: int, engines: list[str]) -> dict[str, str]:
    """Compare each engine's rows with mlcycle's, by entity row id (values must be equal, nulls alike)."""
    import pyarrow.parquet as pq

    base_path = work / f"result-mlcycle-{rows}.parquet"
    if not base_path.exists():
        return {}
    base = pq.read_table(base_path).to_pandas().set_index("row_id").sort_index()
    notes = {}
    for engine in engines:
        path = work / f"result-{engine}-{rows}.parquet"
        if engine == "mlcycle" or not path.exists():
            continue
        other = pq.read_table(path).to_pandas().set_index("row_id").sort_index()
        missing = len(base) - len(other)
        common = base.loc[other.index]
        differing = int((~((common == other) | (common.isna() & other.isna()))).any(axis=1).sum())
        notes[engine] = f"{differing} rows differ" + (f", {missing:,} rows dropped" if missing else "")
    return notes


def report(results: dict[tuple[str, int], dict[str, Any]], notes: dict[int, dict[str, str]]) -> None:
    print()
    header = f"{'entity rows':>11}  {'engine':<14} {'seconds':>8} {'peak MiB':>9}  {'vs mlcycle':>10}"
    print(header + "  rows back / agreement")
    for (engine, rows), r in results.items():
        if "error" in r:
            print(f"{rows:>11,}  {engine:<14} {'-':>8} {'-':>9}  {'':>10}  {r['error']}")
            continue
        ours = results.get(("mlcycle", rows), {}).get("seconds")
        ratio = f"{r['seconds'] / ours:.2f}x" if ours else "-"
        note = notes.get(rows, {}).get(engine, "reference" if engine == "mlcycle" else "")
        line = f"{rows:>11,}  {engine:<14} {r['seconds']:>8.3f} {r['peak_mib']:>9,.0f}  {ratio:>10}"
        print(f"{line}  {r['rows']:,} / {note}")
    print(
        "\n'vs mlcycle' = engine time / mlcycle time (above 1: mlcycle is faster). Times: best of the runs,"
    )
    print("from Parquet files on disk to an Arrow table, excluding imports and Feast's apply().")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setup", action="store_true", help="create bench/.venv-feast and exit")
    parser.add_argument("--entity-rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--view-rows", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per engine and size (Feast's file store: 1)"
    )
    parser.add_argument("--skip", action="append", default=[], choices=ENGINES)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per engine and size")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup()
        return 0
    if args.child:
        child(args.child, Path(args.work), args.rows, args.repeat)
        return 0
    engines = [e for e in ENGINES if e not in args.skip]
    with tempfile.TemporaryDirectory(prefix="pit-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        generate(work, args)
        print(
            f"data: 2 views x {args.view_rows:,} rows, {args.entities:,} entities, {args.days} days "
            f"({time.perf_counter() - started:.1f}s to generate); TTLs 1 d and 6 h"
        )
        print(f"mlcycle snapshots of both views (ingestion rebuilds them per batch): {compact(work):.2f}s")
        results, notes = {}, {}
        for rows in args.entity_rows:
            for engine in engines:
                repeat = 1 if engine == "feast-file" else args.repeat
                results[(engine, rows)] = r = measure(engine, work, rows, repeat, args.timeout)
                print(f"  {rows:,} entity rows, {engine}: {r.get('seconds', r.get('error'))}", flush=True)
            notes[rows] = agreement(work, rows, engines)
        report(results, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
