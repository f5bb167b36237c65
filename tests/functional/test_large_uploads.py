"""The large-upload steps against moto: plan -> every chunk -> finish, as the state machine runs them."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle.config import Settings
from mlcycle.data import large_uploads
from mlcycle.data.manifests import read_manifest
from mlcycle.data.prepare import PrepareResult
from mlcycle.example.churn import generate
from tests.utils import make_bucket


@pytest.fixture
def buckets(s3: Any) -> None:
    make_bucket(s3, "landing")
    make_bucket(s3, "curated")


def _run(
    s3: Any, key: str, body: bytes, settings: Settings, chunk_rows: int
) -> tuple[dict[str, Any], PrepareResult]:
    """What the state machine does: Plan, one Check per listed item (ItemSelector's shape), Finish."""
    version = s3.put_object(Bucket="landing", Key=key, Body=body)["VersionId"]
    request = {"upload": {"bucket": "landing", "key": key, "version_id": version}}
    planned = large_uploads.plan(request, s3=s3, curated_bucket="curated", chunk_rows=chunk_rows)
    items = json.loads(s3.get_object(Bucket="curated", Key=planned["plan_key"])["Body"].read())
    for item in items:
        large_uploads.process_chunk(
            planned | {"item": item}, settings, s3=s3, curated_bucket="curated", batch_rows=7
        )
    return planned, large_uploads.finish(planned, settings, s3=s3, curated_bucket="curated")


def test_csv_is_split_at_line_ends_and_checked_per_chunk(s3: Any, buckets: None, settings: Settings) -> None:
    # GIVEN a CSV of 95 rows, two broken, and one key repeated in a later chunk
    frame = generate(95, seed=21).astype({"age": "string", "tenure_months": "string"})
    frame.loc[[3, 60], "tenure_months"] = "many"
    frame.loc[80, "customer_id"] = str(frame["customer_id"].iloc[10])
    # WHEN it goes through the large-upload steps in chunks of 20 rows
    planned, result = _run(s3, "uploads/churn/big.csv", frame.to_csv(index=False).encode(), settings, 20)
    # THEN five chunks were planned, and every row is accounted for exactly once
    assert planned["chunks"] == 5 and planned["format"] == "csv"
    assert (result.rows, result.curated_rows, result.quarantined_rows) == (95, 92, 3)
    manifest = read_manifest(s3, "curated", f"manifests/churn/{result.upload_id}.json")
    curated = pd.concat(
        pd.read_parquet(io.BytesIO(s3.get_object(Bucket="curated", Key=o.key)["Body"].read()))
        for o in manifest.objects
    )
    assert len(curated) == 92 and not curated["customer_id"].duplicated().any()
    assert sum(o.rows for o in manifest.objects) == 92
    report = json.loads(
        s3.get_object(Bucket="curated", Key=f"quarantine/churn/{result.upload_id}/report.json")["Body"].read()
    )
    assert {(v["row"], v["rule"]) for v in report["violations"]} >= {(3, "type"), (60, "type")}
    assert {c["rule"] for c in report["violation_counts"]} == {"type", "unique"}


def test_parquet_is_split_by_row_group(s3: Any, buckets: None, settings: Settings) -> None:
    buffer = io.BytesIO()
    pq.write_table(
        pa.Table.from_pandas(generate(45, seed=22), preserve_index=False), buffer, row_group_size=10
    )
    planned, result = _run(s3, "uploads/churn/big.parquet", buffer.getvalue(), settings, 1000)
    assert planned["chunks"] == 5 and planned["format"] == "parquet"
    assert (result.rows, result.curated_rows) == (45, 45)


def test_a_bad_line_in_a_later_chunk_is_reported_at_its_line_of_the_upload(
    s3: Any, buckets: None, settings: Settings
) -> None:
    # GIVEN a CSV of 60 rows whose line 47 (in the third chunk of 20 rows) is ragged
    lines = generate(60, seed=23).to_csv(index=False).encode().splitlines()
    lines[46] = b"too,few"
    # WHEN it goes through the large-upload steps
    _, result = _run(s3, "uploads/churn/ragged.csv", b"\n".join(lines) + b"\n", settings, 20)
    # THEN that line alone is quarantined, numbered as in the upload, and the 59 other rows curated
    assert (result.rows, result.curated_rows, result.quarantined_rows) == (60, 59, 1)
    report = json.loads(
        s3.get_object(Bucket="curated", Key=f"quarantine/churn/{result.upload_id}/report.json")["Body"].read()
    )
    assert [(v["row"], v["line"], v["rule"]) for v in report["violations"]] == [(45, 47, "ragged")]
