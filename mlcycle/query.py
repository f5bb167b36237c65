"""SQL over the lake's Glue-cataloged tables: DuckDB on this machine, Athena in AWS.

The Glue catalog is the one list of tables for both engines. For DuckDB, each table the query names is
read from its catalogued S3 location through Arrow's S3 filesystem (hive partitions become columns, as
in Athena), since DuckDB cannot fetch its own S3 extension here; Athena reads the same tables as deployed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from mlcycle.features.engines import AthenaEngine, DuckDBEngine, s3_filesystem

if TYPE_CHECKING:
    from mypy_boto3_athena import AthenaClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class CatalogTable:
    name: str
    location: str
    partition_keys: tuple[str, ...]


def catalog_tables(glue: GlueClient, database: str) -> list[CatalogTable]:
    paginator = glue.get_paginator("get_tables")
    return [
        CatalogTable(
            name=table["Name"],
            location=table["StorageDescriptor"]["Location"],
            partition_keys=tuple(k["Name"] for k in table.get("PartitionKeys", [])),
        )
        for page in paginator.paginate(DatabaseName=database)
        for table in page["TableList"]
    ]


def referenced(sql: str, tables: list[CatalogTable]) -> list[CatalogTable]:
    """The catalogued tables a query names (as whole words), so only those are read."""
    return [t for t in tables if re.search(rf"\b{re.escape(t.name)}\b", sql, flags=re.IGNORECASE)]


def read_table(s3: S3Client, table: CatalogTable) -> pa.Table:
    import pyarrow.dataset as ds

    path = table.location.removeprefix("s3://").rstrip("/")
    filesystem = s3_filesystem(s3)
    partitioning = ds.partitioning(flavor="hive") if table.partition_keys else None
    try:
        dataset = ds.dataset(path, filesystem=filesystem, format="parquet", partitioning=partitioning)
    except FileNotFoundError:
        return pa.table({})
    return dataset.to_table()


def run_duckdb(sql: str, *, glue: GlueClient, s3: S3Client, database: str) -> pa.Table:
    tables = referenced(sql, catalog_tables(glue, database))
    if not tables:
        known = ", ".join(t.name for t in catalog_tables(glue, database)) or "none"
        raise LookupError(f"the query names no table of Glue database {database} (tables: {known})")
    return DuckDBEngine().run(sql, {t.name: read_table(s3, t) for t in tables})


def run_athena(sql: str, *, athena: AthenaClient, workgroup: str, database: str) -> pa.Table:
    rows = AthenaEngine(athena, workgroup, database).run(sql)
    return pa.Table.from_pylist(rows)
