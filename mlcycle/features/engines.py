"""Where point-in-time SQL runs: DuckDB in this process, or Athena in AWS.

DuckDB cannot load its httpfs extension here (no downloads), so it never reads S3 itself: the offline
store hands it Arrow data read through ``pyarrow.fs.S3FileSystem`` (pointed at the client's endpoint,
which is how the embedded AWS is reached) or through the boto3 client. Athena reads the Glue tables as
deployed; on the embedded AWS moto accepts the calls and returns canned rows, so only the API shape of
the Athena runner is exercised there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

if TYPE_CHECKING:
    from mypy_boto3_athena import AthenaClient
    from mypy_boto3_s3 import S3Client


class QueryFailedError(RuntimeError):
    """The query engine reported a failure; the message carries its reason."""


def s3_filesystem(s3: S3Client) -> pafs.S3FileSystem:
    """An Arrow S3 filesystem with the boto3 client's region, credentials and (custom) endpoint."""
    meta = s3.meta
    # botocore keeps the resolved credentials only on its request signer, which the stubs do not declare.
    credentials = s3._request_signer._credentials  # type: ignore[attr-defined]
    frozen = credentials.get_frozen_credentials() if credentials is not None else None
    kwargs: dict[str, Any] = {"region": meta.region_name or "us-east-1"}
    if frozen is not None:
        kwargs |= {
            "access_key": frozen.access_key,
            "secret_key": frozen.secret_key,
            "session_token": frozen.token,
        }
    endpoint = urlparse(meta.endpoint_url)
    if endpoint.hostname and not endpoint.hostname.endswith("amazonaws.com"):
        # The embedded AWS (or another S3-compatible endpoint): path-style over its scheme.
        kwargs |= {"endpoint_override": endpoint.netloc, "scheme": endpoint.scheme}
    return pafs.S3FileSystem(**kwargs)


class DuckDBEngine:
    """Runs SQL over named Arrow inputs in an in-memory DuckDB (UTC session, so timestamps compare)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, sql: str, inputs: Mapping[str, pa.Table]) -> pa.Table:
        import duckdb  # imported on use: the ingest Lambda never needs it

        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            for name, table in inputs.items():
                con.register(name, table)
            relation = con.sql(sql)
            # DuckDB 2 names it to_arrow_table; 1.x called it arrow.
            fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
            result: pa.Table = fetch()
            return result
        finally:
            con.close()


@dataclass(frozen=True)
class AthenaEngine:
    """start_query_execution, poll, then page through the results (rows as strings, header first)."""

    athena: AthenaClient
    workgroup: str
    database: str
    poll_seconds: float = 0.5
    timeout_seconds: float = 600.0
    sleep: Callable[[float], None] = time.sleep

    def run(self, sql: str) -> list[dict[str, str | None]]:
        query_id = self.athena.start_query_execution(
            QueryString=sql,
            WorkGroup=self.workgroup,
            QueryExecutionContext={"Database": self.database},
        )["QueryExecutionId"]
        self._wait(query_id)
        return self._results(query_id)

    def _wait(self, query_id: str) -> None:
        waited = 0.0
        while True:
            status = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return
            if state in ("FAILED", "CANCELLED"):
                raise QueryFailedError(f"Athena query {query_id} {state}: {status.get('StateChangeReason')}")
            if waited >= self.timeout_seconds:
                raise QueryFailedError(f"Athena query {query_id} still {state} after {waited:.0f}s")
            self.sleep(self.poll_seconds)
            waited += self.poll_seconds

    def _results(self, query_id: str) -> list[dict[str, str | None]]:
        paginator = self.athena.get_paginator("get_query_results")
        header: list[str] | None = None
        rows: list[dict[str, str | None]] = []
        for page in paginator.paginate(QueryExecutionId=query_id):
            for row in page["ResultSet"]["Rows"]:
                values = [cell.get("VarCharValue") for cell in row["Data"]]
                if header is None:  # Athena repeats nothing: the first row of the first page is the header
                    header = [str(v) for v in values]
                    continue
                rows.append(dict(zip(header, values, strict=False)))
        return rows
