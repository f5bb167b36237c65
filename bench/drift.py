"""Data drift: mlcycle's drift side by side with Evidently 0.7 and plain SciPy, and the sort floor.

Not a test. One run writes a reference and a current window (20 columns: 15 numeric with 1% missing, 5
string categoricals of 5 to 1,000 values; 4 columns shifted a little) as Parquet, 100k and 1M rows each by
default, then runs every engine in its own subprocess on the same files and prints time, peak memory
(the child's own high-water mark after reading the files, the two frames included; "added" is that peak
less the frames) and the ratios the monitoring issue asks for.

    python bench/drift.py --setup        # once: bench/.venv-evidently (evidently 0.7.23, pandas<3, pyarrow)
    python bench/drift.py                # 100k and 1M rows, every engine
    python bench/drift.py --rows 100000 --skip evidently

Engines (the time is the comparison only: reading the files and imports are left out):

- ``mlcycle``: ``mlcycle.monitoring.drift.compare`` with its defaults (one thread); ``mlcycle-threads``
  with ``workers=None`` (threads over columns, as many as the process may use, at most 4);
  ``mlcycle-profiled``: the reference profiled (sorted) once beforehand, as a monitor does with its
  baseline, then one window compared (the profiling time is printed apart);
- ``scipy``: what one writes per column with SciPy: ``wasserstein_distance`` / std for numbers,
  ``value_counts`` + ``jensenshannon`` + ``chi2_contingency`` for categories (the large-sample tests);
- ``evidently``: ``Report([DataDriftPreset()]).run(current, reference)`` in bench/.venv-evidently
  (Evidently does not import with pandas 3);
- ``mlcycle-parquet``: ``compare`` on the two files through ``ParquetColumns``, which reads one column of
  each side at a time: the time includes reading them, the memory never holds a whole frame;
- ``floor``: ``np.sort`` of every numeric column of both frames, one thread: the work that cannot be
  avoided for an exact Wasserstein distance; ``floor+hash`` adds ``pd.factorize`` of the string columns.

Evidently and mlcycle choose the same tests here (above 1000 rows: normalised Wasserstein and
Jensen-Shannon), so the script also prints how far their per-column scores are apart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_PACKAGES = ["evidently==0.7.23", "pandas<3", "pyarrow"]
ENGINES = (
    "floor",
    "floor+hash",
    "mlcycle",
    "mlcycle-threads",
    "mlcycle-profiled",
    "mlcycle-parquet",
    "scipy",
    "evidently",
)
NUMERIC, CATEGORICAL = 15, 5
CARDINALITIES = (5, 20, 50, 200, 1000)


# --- data ---------------------------------------------------------------------------------------------


def generate(path: Path, rows: int, seed: int, *, shifted: bool) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(NUMERIC):
        shift = 0.3 if shifted and i in (0, 5, 10) else 0.0
        if i % 3 == 0:
            values = rng.normal(shift, 1.0, rows)
        elif i % 3 == 1:
            values = rng.lognormal(shift, 1.0, rows)
        else:
            values = rng.integers(0, 500, rows).astype(float) + 50 * shift
        values[rng.random(rows) < 0.01] = np.nan
        data[f"num{i:02d}"] = values
    for i, cardinality in enumerate(CARDINALITIES):
        weights = 1.0 / np.arange(1, cardinality + 1)
        if shifted and i == 1:
            weights = weights[::-1]
        labels = np.array([f"c{i}_{k}" for k in range(cardinality)], dtype=object)
        data[f"cat{i}"] = labels[rng.choice(cardinality, rows, p=weights / weights.sum())]
    pd.DataFrame(data).to_parquet(path)


def schema_of(frame: Any) -> dict[str, str]:
    return {c: ("numeric" if c.startswith("num") else "categorical") for c in frame.columns}


# --- one engine in a child process --------------------------------------------------------------------


def child(engine: str, work: Path, rows: int, repeat: int) -> None:
    import pandas as pd

    if engine == "mlcycle-parquet":
        _parquet_child(work, rows, repeat)
        return

    started = time.perf_counter()
    job = _job(engine)  # imports happen here
    imports = time.perf_counter() - started
    reference = pd.read_parquet(work / f"reference-{rows}.parquet")
    current = pd.read_parquet(work / f"current-{rows}.parquet")
    read_peak_mib = _rss_kib("VmHWM") / 1024
    _forget_the_read()
    loaded_mib = _rss_kib("VmRSS") / 1024
    setup, run = job(reference, current)
    times, scores = [], {}
    for _ in range(repeat):
        t = time.perf_counter()
        scores = run()
        times.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "seconds": min(times),
                "all": times,
                "imports": imports,
                "setup": setup,
                "read_peak_mib": read_peak_mib,
                "loaded_mib": loaded_mib,
                "peak_mib": _rss_kib("VmHWM") / 1024,
                "scores": scores,
            }
        )
    )


def _parquet_child(work: Path, rows: int, repeat: int) -> None:
    """The files compared column by column, never whole in memory: reading is part of the time."""
    from mlcycle.monitoring.drift import compare
    from mlcycle.monitoring.sources import ParquetColumns

    reference = ParquetColumns(work / f"reference-{rows}.parquet")
    current = ParquetColumns(work / f"current-{rows}.parquet")
    schema: Any = {c: ("numeric" if c.startswith("num") else "categorical") for c in reference.names}
    loaded_mib = _rss_kib("VmRSS") / 1024
    times, scores = [], {}
    for _ in range(repeat):
        t = time.perf_counter()
        report = compare(reference, current, schema)
        times.append(time.perf_counter() - t)
        scores = {c.column: float(c.score or 0.0) for c in report.columns}
    peak = _rss_kib("VmHWM") / 1024
    print(
        json.dumps(
            {
                "seconds": min(times),
                "all": times,
                "imports": 0.0,
                "setup": 0.0,
                "read_peak_mib": 0.0,
                "loaded_mib": loaded_mib,
                "peak_mib": peak,
                "scores": scores,
            }
        )
    )


def _job(engine: str) -> Any:
    if engine.startswith("floor"):
        import numpy as np
        import pandas as pd

        def floor(reference: Any, current: Any) -> tuple[float, Any]:
            def run() -> dict[str, float]:
                for frame in (reference, current):
                    for name in frame.columns:
                        if name.startswith("num"):
                            np.sort(frame[name].to_numpy())
                        elif engine == "floor+hash":
                            pd.factorize(frame[name])
                return {}

            return 0.0, run

        return floor
    if engine.startswith("mlcycle"):
        from mlcycle.monitoring.drift import DriftOptions, compare
        from mlcycle.monitoring.profile import profile

        def mlcycle(reference: Any, current: Any) -> tuple[float, Any]:
            schema: Any = schema_of(reference)
            options = DriftOptions(workers=None if engine == "mlcycle-threads" else 1)
            setup, base = 0.0, reference
            if engine == "mlcycle-profiled":
                t = time.perf_counter()
                base = profile(reference, schema)
                setup = time.perf_counter() - t

            def run() -> dict[str, float]:
                report = compare(base, current, schema, options)
                return {c.column: float(c.score or 0.0) for c in report.columns}

            return setup, run

        return mlcycle
    if engine == "scipy":
        return _scipy_job
    return _evidently_job


def _scipy_job(reference: Any, current: Any) -> tuple[float, Any]:
    import numpy as np
    import pandas as pd
    from scipy import stats
    from scipy.spatial import distance

    def run() -> dict[str, float]:
        scores = {}
        for name in reference.columns:
            ref, cur = reference[name].dropna(), current[name].dropna()
            if name.startswith("num"):
                scores[name] = stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
            else:
                counts = pd.concat([ref.value_counts(), cur.value_counts()], axis=1).fillna(0).to_numpy()
                scores[name] = float(distance.jensenshannon(counts[:, 0] / len(ref), counts[:, 1] / len(cur)))
                stats.chi2_contingency(counts.T, correction=False)
        return scores

    return 0.0, run


def _evidently_job(reference: Any, current: Any) -> tuple[float, Any]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    def run() -> dict[str, float]:
        snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
        scores = {}
        for metric in snapshot.dict()["metrics"]:
            found = re.match(r"ValueDrift\(column=([^,)]+)", str(metric.get("metric_name", "")))
            if found and isinstance(metric.get("value"), int | float):
                scores[found.group(1)] = float(metric["value"])
        return scores

    return 0.0, run


def _forget_the_read() -> None:
    """Return what reading Parquet left in Arrow's pool, then reset the peak (Linux: ``clear_refs`` 5),
    so that the peak measures the comparison with the two frames in memory, not the file reader."""
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError):  # not Linux, or not allowed: the peak then includes the read
        Path("/proc/self/clear_refs").write_text("5")


def _rss_kib(field: str) -> int:
    """``VmHWM`` is this process's own peak (``ru_maxrss`` would count the parent's size at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


# --- the parent ---------------------------------------------------------------------------------------


def setup() -> None:
    if not (EVIDENTLY_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    pip = [str(EVIDENTLY_VENV / "bin" / "python"), "-m", "pip", "install", "-q", *EVIDENTLY_PACKAGES]
    subprocess.run(pip, check=True)
    print(f"ready: {EVIDENTLY_VENV}")


def _python(engine: str) -> str:
    if engine != "evidently":
        return sys.executable
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `python bench/drift.py --setup` first")
    return str(python)


def measure(engine: str, work: Path, rows: int, repeat: int, timeout: float) -> dict[str, Any]:
    command = [_python(engine), __file__, "--child", engine, "--work", str(work), "--rows", str(rows)]
    command += ["--repeat", str(repeat)]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else "failed"}
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def report(results: dict[tuple[str, int], dict[str, Any]], sizes: list[int]) -> None:
    print(
        f"\n{'rows':>10}  {'engine':<17}{'seconds':>9}{'peak MiB':>10}{'data MiB':>10}{'added':>8}  {'vs mlcycle':>10}"
    )
    for rows in sizes:
        base = results.get(("mlcycle", rows), {}).get("seconds")
        for (engine, size), r in results.items():
            if size != rows:
                continue
            if "error" in r:
                print(f"{rows:>10,}  {engine:<17}{r['error']}")
                continue
            ratio = f"{r['seconds'] / base:.2f}x" if base else "-"
            extra = f"  (profiling the reference: {r['setup']:.3f}s)" if r.get("setup") else ""
            print(
                f"{rows:>10,}  {engine:<17}{r['seconds']:>9.3f}{r['peak_mib']:>10,.0f}"
                f"{r['loaded_mib']:>10,.0f}{r['peak_mib'] - r['loaded_mib']:>8,.0f}  {ratio:>10}{extra}"
            )
        _ratios(results, rows)


def _ratios(results: dict[tuple[str, int], dict[str, Any]], rows: int) -> None:
    def seconds(engine: str) -> float | None:
        value = results.get((engine, rows), {}).get("seconds")
        return float(value) if value else None

    ours, threads = seconds("mlcycle"), seconds("mlcycle-threads")
    prepared = seconds("mlcycle-profiled")
    with_threads = f" ({{}} with threads: {threads:.3f}s)" if threads else ""
    lines = []
    for peer in ("evidently", "scipy"):
        theirs = seconds(peer)
        if theirs and ours:
            extra = with_threads.format(f"{theirs / threads:.0f}x") if threads else ""
            lines.append(f"{peer} / mlcycle (cold, one thread): {theirs / ours:.0f}x{extra}")
            if prepared:
                # Evidently prepares its reference on every run: this ratio is not like for like
                lines.append(
                    f"{peer} / mlcycle with the baseline profiled beforehand: {theirs / prepared:.0f}x"
                )
    floor = seconds("floor")
    if floor and ours:
        extra = with_threads.format(f"{threads / floor:.2f}x") if threads else ""
        lines.append(f"mlcycle / sort floor: {ours / floor:.2f}x{extra}")
    agreement = _agreement(results.get(("mlcycle", rows), {}), results.get(("evidently", rows), {}))
    if agreement:
        lines.append(agreement)
    for line in lines:
        print(f"{'':>12}{line}")


def _agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    a, b = ours.get("scores") or {}, theirs.get("scores") or {}
    common = [c for c in a if c in b]
    if not common:
        return ""
    worst = max(abs(a[c] - b[c]) / max(abs(b[c]), 1e-12) for c in common)
    return f"scores vs Evidently's: {len(common)} columns, largest relative difference {worst:.1e}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setup", action="store_true", help="create bench/.venv-evidently and exit")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine and size (Evidently: 1 at 1M)")
    parser.add_argument("--skip", action="append", default=[], choices=ENGINES)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per engine and size")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup()
        return 0
    if args.child:
        child(args.child, Path(args.work), args.rows[0], args.repeat)
        return 0
    engines = [e for e in ENGINES if e not in args.skip]
    print(
        f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on {os.cpu_count()} CPUs"
    )
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        work = Path(tmp)
        for rows in args.rows:
            generate(work / f"reference-{rows}.parquet", rows, 1, shifted=False)
            generate(work / f"current-{rows}.parquet", rows, 2, shifted=True)
            for engine in engines:
                repeat = 1 if engine == "evidently" and rows >= 1_000_000 else args.repeat
                results[(engine, rows)] = r = measure(engine, work, rows, repeat, args.timeout)
                print(f"  {rows:,} rows, {engine}: {r.get('seconds', r.get('error'))}", flush=True)
    report(results, args.rows)
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if args.out:
        rows_out = [
            {"engine": e, "rows": n, **{k: v for k, v in r.items() if k != "scores"}}
            for (e, n), r in results.items()
        ]
        args.out.write_text(json.dumps(rows_out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
