"""``mlcycle query "SQL"``: explore curated data and features with SQL."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlcycle.config import Settings


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle import query
    from mlcycle.application.connect import connect

    connection = connect(settings)
    database = connection.platform.glue_database or settings.prefix.replace("-", "_")
    engine = args.engine or ("duckdb" if connection.local else "athena")
    if args.tables:
        for table in query.catalog_tables(connection.client("glue"), database):
            print(f"{table.name:<32} {table.location}  partitions: {', '.join(table.partition_keys) or '-'}")
        return 0
    if not args.sql:
        raise ValueError("give a SQL statement, or --tables to list what can be queried")
    if engine == "duckdb":
        result = query.run_duckdb(
            args.sql, glue=connection.client("glue"), s3=connection.client("s3"), database=database
        )
    else:
        workgroup = connection.platform.athena_workgroup or settings.prefix
        result = query.run_athena(
            args.sql, athena=connection.client("athena"), workgroup=workgroup, database=database
        )
    _emit(result, args.out, args.max_rows)
    return 0


def _emit(result: Any, out: str | None, max_rows: int) -> None:
    if out is None:
        frame = result.to_pandas()
        print(frame.to_string(max_rows=max_rows, index=False) if len(frame) else "(no rows)")
        print(f"({len(frame)} row{'s' if len(frame) != 1 else ''})")
        return
    path = Path(out)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(result, path)
    else:
        result.to_pandas().to_csv(path, index=False)
    print(f"wrote {result.num_rows} rows to {path}")


def add_parser(subparsers: Any) -> None:
    q = subparsers.add_parser(
        "query",
        help="SQL over curated data and features (DuckDB locally, Athena in AWS)",
        description="Tables are those of the Glue database (see --tables); partition columns are columns.",
    )
    q.add_argument("sql", nargs="?", help='e.g. "select contract, avg(churned) from churn group by 1"')
    q.add_argument("--tables", action="store_true", help="list the tables that can be queried")
    q.add_argument("--engine", choices=("duckdb", "athena"), help="default: duckdb locally, athena in AWS")
    q.add_argument("--out", help="write the result to FILE.csv or FILE.parquet instead of the terminal")
    q.add_argument("--max-rows", type=int, default=40, help="rows shown on the terminal (default 40)")
    q.set_defaults(func=cmd_query)
