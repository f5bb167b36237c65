"""`mlcycle query` engines: DuckDB over Glue-cataloged Parquet in S3 (read through Arrow), Athena's API."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pandas as pd
import pytest

from mlcycle import query
from mlcycle.local import server


@pytest.fixture(scope="module")
def aws() -> Iterator[Any]:
    embedded = server.start()
    try:
        yield lambda service: boto3.client(
            service, endpoint_url=embedded.endpoint_url, region_name="us-east-1"
        )
    finally:
        embedded.stop()


def _table(glue: Any, name: str, location: str) -> None:
    glue.create_table(
        DatabaseName="lake",
        TableInput={
            "Name": name,
            "PartitionKeys": [{"Name": "ingest_date", "Type": "string"}],
            "StorageDescriptor": {"Location": location, "Columns": [{"Name": "x", "Type": "bigint"}]},
        },
    )


def test_duckdb_reads_only_the_tables_the_query_names(aws: Any) -> None:
    # GIVEN two catalogued tables, one with two hive partitions
    s3, glue = aws("s3"), aws("glue")
    s3.create_bucket(Bucket="curated")
    glue.create_database(DatabaseInput={"Name": "lake"})
    for day, frame in (("2026-01-01", pd.DataFrame({"x": [1, 2]})), ("2026-01-02", pd.DataFrame({"x": [3]}))):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        s3.put_object(
            Bucket="curated", Key=f"curated/t/ingest_date={day}/part.parquet", Body=buffer.getvalue()
        )
    _table(glue, "t", "s3://curated/curated/t/")
    _table(glue, "empty", "s3://curated/curated/empty/")
    # WHEN a query groups by the partition column
    sql = "select ingest_date, sum(x) as total from t group by 1 order by 1"
    result = query.run_duckdb(sql, glue=glue, s3=s3, database="lake").to_pylist()
    # THEN partitions are columns, as in Athena
    assert result == [{"ingest_date": "2026-01-01", "total": 3}, {"ingest_date": "2026-01-02", "total": 3}]
    assert [t.name for t in query.referenced(sql, query.catalog_tables(glue, "lake"))] == ["t"]
    with pytest.raises(LookupError, match="names no table"):
        query.run_duckdb("select 1 from nowhere", glue=glue, s3=s3, database="lake")


def test_athena_engine_speaks_the_api(aws: Any) -> None:
    athena = aws("athena")
    athena.create_work_group(
        Name="wg", Configuration={"ResultConfiguration": {"OutputLocation": "s3://curated/q/"}}
    )
    # moto accepts any SQL and answers canned rows: this checks the calls and the result shape only
    result = query.run_athena("select 1 as one", athena=athena, workgroup="wg", database="lake")
    (execution_id,) = athena.list_query_executions(WorkGroup="wg")["QueryExecutionIds"]
    execution = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
    assert execution["Query"] == "select 1 as one"
    assert execution["QueryExecutionContext"]["Database"] == "lake"
    assert isinstance(result.to_pylist(), list)
