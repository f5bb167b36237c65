"""prepare-data against moto: curated + quarantined = uploaded, for every kind of upload."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mlcycle.config import ColumnSpec, DatasetContract, Settings
from mlcycle.data.prepare import Upload, prepare_file, prepare_upload
from mlcycle.example.churn import BAD_ROWS, bundled_frame, generate
from tests.utils import make_bucket


@pytest.fixture
def buckets(s3: Any) -> tuple[str, str]:
    return make_bucket(s3, "landing"), make_bucket(s3, "curated")


def _put(s3: Any, bucket: str, key: str, body: bytes) -> Upload:
    version = s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]
    return Upload(bucket, key, version)


def _prepare(s3: Any, upload: Upload, settings: Settings, chunk_rows: int = 100_000) -> Any:
    return prepare_upload(upload, settings, s3=s3, curated_bucket="curated", chunk_rows=chunk_rows)


def _curated_rows(s3: Any) -> int:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="curated", Prefix="curated/").get("Contents", [])]
    return sum(
        len(pd.read_parquet(io.BytesIO(s3.get_object(Bucket="curated", Key=k)["Body"].read()))) for k in keys
    )


@pytest.mark.parametrize("chunk_rows", [7, 100_000])
def test_mixed_upload_splits_rows_and_reports(
    s3: Any, buckets: Any, settings: Settings, chunk_rows: int
) -> None:
    # GIVEN the bundled upload, which has a few broken rows
    frame = bundled_frame(rows=300)
    upload = _put(s3, "landing", "uploads/churn/part.csv", frame.to_csv(index=False).encode())
    # WHEN it is prepared, in small or large chunks
    result = _prepare(s3, upload, settings, chunk_rows)
    # THEN good rows are curated, bad rows quarantined with a report, none lost
    assert result.rows == 300
    assert result.quarantined_rows == len(BAD_ROWS)
    assert result.curated_rows + result.quarantined_rows == result.rows == _curated_rows(s3) + len(BAD_ROWS)
    report = json.loads(
        s3.get_object(Bucket="curated", Key=f"quarantine/churn/{upload.upload_id}/report.json")["Body"].read()
    )
    assert sorted(v["row"] for v in report["violations"]) == sorted(BAD_ROWS)
    assert "tenure_months" in report["summary"]
    assert result.event_types == ["DatasetValidated", "DatasetQuarantined"]


def test_gzip_upload_is_read(s3: Any, buckets: Any, settings: Settings) -> None:
    body = gzip.compress(generate(50, seed=1).to_csv(index=False).encode())
    result = _prepare(s3, _put(s3, "landing", "uploads/churn/part.csv.gz", body), settings)
    assert (result.curated_rows, result.quarantined_rows, result.event_types) == (50, 0, ["DatasetValidated"])


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("empty.csv", b"", "EmptyDataError"),
        ("truncated.csv.gz", gzip.compress(b"customer_id,event_time\n" * 500, mtime=0)[:60], "Error"),
        ("latin1-header.csv", "customer_\xe9d\n1\n".encode("latin-1"), "UnicodeDecodeError"),
        ("wrong-columns.csv", b"a,b\n1,2\n", "missing columns"),
    ],
)
def test_unreadable_file_goes_whole_to_quarantine(
    s3: Any, buckets: Any, settings: Settings, name: str, body: bytes, reason: str
) -> None:
    upload = _put(s3, "landing", f"uploads/churn/{name}", body)
    result = _prepare(s3, upload, settings)
    assert result.curated_rows == 0
    assert reason in (result.reason or "")
    kept = s3.get_object(Bucket="curated", Key=f"quarantine/churn/{upload.upload_id}/source")["Body"].read()
    assert kept == body


def test_unknown_dataset_is_quarantined(s3: Any, buckets: Any, settings: Settings) -> None:
    result = _prepare(s3, _put(s3, "landing", "uploads/other/x.csv", b"a\n1\n"), settings)
    assert result.quarantined_rows == 1 and "no contract" in (result.reason or "")


def test_redelivered_event_writes_nothing_twice(s3: Any, buckets: Any, settings: Settings) -> None:
    upload = _put(s3, "landing", "uploads/churn/p.csv", generate(40, seed=2).to_csv(index=False).encode())
    _prepare(s3, upload, settings)
    _prepare(s3, upload, settings)
    assert _curated_rows(s3) == 40


_NUMBERED = DatasetContract(
    name="numbered",
    key="id",
    columns=(
        ColumnSpec(name="id", type="string"),
        ColumnSpec(name="n", type="int"),
        ColumnSpec(name="x", type="int", min=0, max=10),
    ),
)


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    cells=st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from(["0", "7", "11", "-1", "x", ""])), max_size=80
    ),
    chunk_rows=st.integers(1, 30),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
def test_prepared_file_loses_and_duplicates_no_row(
    cells: list[tuple[int, str]], chunk_rows: int, fmt: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # GIVEN any mix of good and bad rows (range, type, null, repeated keys), numbered by `n`
    frame = pd.DataFrame(
        {"id": [f"k{k}" for k, _ in cells], "n": range(len(cells)), "x": [x for _, x in cells]}
    )
    work = tmp_path_factory.mktemp("prop")
    path = work / f"upload.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.astype(str).to_dict("records")))
    if frame.empty:
        path.write_text("id,n,x\n" if fmt == "csv" else "")
    # WHEN it is prepared in chunks of any size
    sinks = prepare_file(path, _NUMBERED, work, chunk_rows)
    # THEN every row is curated or quarantined exactly once
    good = pd.read_parquet(sinks.curated_path)["n"].tolist() if sinks.curated_rows else []
    bad = pd.read_csv(sinks.bad_path)["_row"].tolist() if sinks.bad_rows else []
    assert sorted(good + bad) == list(range(len(frame)))
    # AND no key is curated twice
    curated_ids = frame.loc[good, "id"]
    assert not curated_ids.duplicated().any()
