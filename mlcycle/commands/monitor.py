"""``mlcycle monitor ACTION``: monitoring from the command line.

``drift`` compares two local files with the monitors' statistics and needs no AWS (the data scientist's
quick check). Each action is one entry of :data:`ACTIONS`: a function that adds its parser (arguments
and ``func``) to the ``monitor`` sub-parsers, so ``run``, ``status`` and ``report`` join the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.commands import monitor_windows
from mlcycle.config import Settings

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.monitoring.drift import DriftOptions, DriftReport
    from mlcycle.monitoring.profile import ColumnKind
    from mlcycle.monitoring.sources import Columns

#: Exit status of ``monitor drift --fail-on-drift`` when the dataset drifted (1 is an error).
DRIFT_EXIT_CODE = 3


# --- monitor drift -----------------------------------------------------------------------------------


def cmd_drift(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.monitoring import report_html
    from mlcycle.monitoring.drift import DriftOptions, compare

    reference, reference_sample = open_table(Path(args.reference))
    current, _ = open_table(Path(args.current))
    schema, source = drift_schema(
        reference_sample, current.names, settings, exclude=(*args.exclude, *_given(args.prediction))
    )
    options = DriftOptions(
        prediction=args.prediction,
        min_rows=args.min_rows,
        drift_share=args.drift_share,
        tests=dict(_pairs(args.test)),
    )
    report = compare(reference, current, schema, options)
    if args.html:
        title = f"Drift: {Path(args.current).name} against {Path(args.reference).name}"
        Path(args.html).write_text(report_html.render(report, title=title), encoding="utf-8")
    if args.model_monitor:
        _write_model_monitor_files(Path(args.model_monitor), report, options, current.names)
    if args.json:
        print(report.to_json())
    else:
        _print_table(report, source)
        if args.html:
            print(f"HTML report: {args.html}")
    drifted = bool(report.dataset.drifted)
    return DRIFT_EXIT_CODE if args.fail_on_drift and drifted else 0


#: Rows of a Parquet file read up front to infer column types (the comparison reads every row).
SAMPLE_ROWS = 50_000


def open_table(path: Path) -> tuple[Columns, pd.DataFrame]:
    """A CSV (optionally gzipped) or Parquet file as columns to compare, and a frame of its first rows
    to infer types from. Parquet is read one column at a time, so large files fit in little memory."""
    import pandas as pd
    import pyarrow.parquet as pq

    from mlcycle.monitoring.sources import FrameColumns, ParquetColumns

    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        first = next(pq.ParquetFile(path).iter_batches(batch_size=SAMPLE_ROWS), None)
        sample = first.to_pandas() if first is not None else pd.read_parquet(path)
        return ParquetColumns(path), sample
    if ".csv" in suffixes or ".tsv" in suffixes or ".txt" in suffixes:
        frame = pd.read_csv(path, sep="\t" if ".tsv" in suffixes else ",")
        return FrameColumns(frame), frame
    raise ValueError(f"{path}: give a .csv, .csv.gz, .tsv or .parquet file")


def drift_schema(
    reference: pd.DataFrame, current: list[str], settings: Settings, exclude: tuple[str, ...] = ()
) -> tuple[dict[str, ColumnKind], str]:
    """Column kinds and where they came from.

    Files of the problem's dataset (every shared column is in its contract) are compared on the model's
    features and the target, typed by the contract; the key and the event time are left out. Other
    files get kinds inferred from the reference's dtypes, without timestamps and identifier-like text
    columns (nearly every value distinct), which only ever look drifted.
    """
    from mlcycle.monitoring.profile import infer_schema

    shared = [c for c in reference.columns if c in set(current) and c not in exclude]
    if not shared:
        raise ValueError("the two files share no column")
    problem = settings.problem
    contract = {c.name: c.type for c in problem.dataset.columns}
    if all(name in contract for name in shared):
        wanted = (*problem.features, problem.target)
        kinds: dict[str, ColumnKind] = {
            name: "numeric" if contract[name] in ("int", "float", "bool") else "categorical"
            for name in wanted
            if name in shared
        }
        return kinds, f"the {problem.dataset.name!r} dataset contract (features and target)"
    inferred = infer_schema(reference[shared])
    identifiers = [
        name for name, kind in inferred.items() if kind == "categorical" and _identifier_like(reference[name])
    ]
    for name in identifiers:
        del inferred[name]
    skipped = f"; skipped as identifiers: {', '.join(identifiers)}" if identifiers else ""
    return inferred, f"inferred from the reference's column types{skipped}"


def _identifier_like(series: pd.Series) -> bool:
    present = series.dropna()
    return len(present) >= 100 and present.nunique() >= 0.95 * len(present)


def _given(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        column, _, test = item.partition("=")
        if not column or not test:
            raise ValueError(f"--test takes COLUMN=TEST, got {item!r}")
        pairs.append((column, test))
    return pairs


def _write_model_monitor_files(
    directory: Path, report: DriftReport, options: DriftOptions, columns: list[str]
) -> None:
    import json

    from mlcycle.monitoring import formats

    directory.mkdir(parents=True, exist_ok=True)
    documents = {
        "statistics.json": formats.statistics(report, "current"),
        "baseline_statistics.json": formats.statistics(report, "reference"),
        "constraints.json": formats.constraints(report, options),
        "constraint_violations.json": formats.violations(report, columns),
    }
    for name, document in documents.items():
        (directory / name).write_text(json.dumps(document, indent=2, allow_nan=False), encoding="utf-8")


def _print_table(report: DriftReport, source: str) -> None:
    dataset = report.dataset
    print(f"column types: {source}")
    print(
        f"{'column':<24}{'type':<12}{'test':<14}{'score':>10}{'threshold':>10}  {'drift':<6} missing ref/cur"
    )
    for column in [*report.columns, *([report.prediction] if report.prediction else [])]:
        score = "-" if column.score is None else f"{column.score:.4g}"
        threshold = "-" if column.threshold is None else f"{column.threshold:g}"
        verdict = {True: "DRIFT", False: "no", None: "n/a"}[column.drifted]
        missing = f"{column.reference_missing_share:.1%}/{column.current_missing_share:.1%}"
        name = column.column if column is not report.prediction else f"{column.column} (prediction)"
        cells = f"{name[:23]:<24}{column.kind:<12}{column.test:<14}{score:>10}{threshold:>10}"
        print(f"{cells}  {verdict:<6} {missing}")
    if dataset.status != "ok":
        rows = f"reference {dataset.reference_rows}, current {dataset.current_rows} rows"
        print(f"dataset: insufficient data ({rows})")
        return
    verdict = "DRIFT" if dataset.drifted else "no drift"
    print(
        f"dataset: {verdict}: {len(dataset.drifted_columns)} of {dataset.columns_with_verdict} "
        f"columns drifted (share {dataset.share:.0%}, threshold {dataset.threshold:.0%})"
    )
    sys.stdout.flush()


def _add_drift(actions: Any) -> None:
    drift = actions.add_parser(
        "drift",
        help="compare two local data files (CSV or Parquet); no AWS needed",
        description="Drift of CURRENT against REFERENCE with the monitors' statistics: per column the test "
        "Evidently would choose (KS, chi-squared or z-test up to 1000 reference rows; normalised "
        "Wasserstein or Jensen-Shannon above), with effect-size and significance guards.",
    )
    drift.add_argument("reference", help="the baseline: a .csv, .csv.gz or .parquet file")
    drift.add_argument("current", help="the data to check, same format")
    drift.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    drift.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    drift.add_argument("--model-monitor", metavar="DIR", help="also write Model Monitor's JSON files to DIR")
    drift.add_argument("--prediction", metavar="COLUMN", help="the prediction column (reported apart)")
    drift.add_argument("--exclude", metavar="COLUMN", action="append", default=[], help="leave a column out")
    drift.add_argument(
        "--test",
        metavar="COLUMN=TEST",
        action="append",
        default=[],
        help="force a test (ks, chisquare, z, wasserstein, jensenshannon, psi) for a column",
    )
    drift.add_argument("--min-rows", type=int, default=30, help="fewer rows: no verdict (default 30)")
    drift.add_argument(
        "--drift-share", type=float, default=0.5, help="share of drifted columns (default 0.5)"
    )
    drift.add_argument(
        "--fail-on-drift",
        action="store_true",
        help=f"exit with status {DRIFT_EXIT_CODE} when the dataset drifted",
    )
    drift.set_defaults(func=cmd_drift)


#: The ``monitor`` actions, each a function that adds its sub-parser.
ACTIONS: tuple[Callable[[Any], None], ...] = (
    monitor_windows.add_run,
    monitor_windows.add_status,
    monitor_windows.add_report,
    _add_drift,
)


def add_parser(subparsers: Any) -> None:
    monitor = subparsers.add_parser("monitor", help="data drift and monitoring")
    actions = monitor.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in ACTIONS:
        add(actions)
