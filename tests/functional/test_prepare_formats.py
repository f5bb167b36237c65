"""prepare-data for every upload format, with manifests, Glue partitions and lineage, against moto."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle import lineage as lin
from mlcycle.config import Settings
from mlcycle.data import catalog
from mlcycle.data.manifests import find_manifest, read_manifest
from mlcycle.data.prepare import Recorders, Upload, prepare_upload
from mlcycle.example.churn import generate
from mlcycle.training_sets import build_training_set
from tests.utils import REGION, make_bucket, make_key_table

NOW = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def buckets(s3: Any) -> tuple[str, str]:
    return make_bucket(s3, "landing"), make_bucket(s3, "curated")


def _put(s3: Any, key: str, body: bytes) -> Upload:
    version = s3.put_object(Bucket="landing", Key=key, Body=body)["VersionId"]
    return Upload("landing", key, version)


def _jsonl(frame: pd.DataFrame) -> bytes:
    return frame.to_json(orient="records", lines=True, date_format="iso").encode()


def _parquet(frame: pd.DataFrame, row_group_size: int = 10) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def _curated(s3: Any) -> pd.DataFrame:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="curated", Prefix="curated/").get("Contents", [])]
    frames = [
        pd.read_parquet(io.BytesIO(s3.get_object(Bucket="curated", Key=k)["Body"].read())) for k in keys
    ]
    return pd.concat(frames, ignore_index=True)


def _broken_jsonl() -> bytes:
    """40 good records, one that lacks a required field, one out of range and one that is not JSON."""
    frame = generate(43, seed=3)
    lines = _jsonl(frame).decode().splitlines()
    missing = json.loads(lines[40])
    del missing["contract"]
    ranged = json.loads(lines[41]) | {"tenure_months": 500}
    lines[40], lines[41], lines[42] = json.dumps(missing), json.dumps(ranged), '{"customer_id": "c9", tru'
    return ("\n".join(lines) + "\n\n").encode()  # a trailing blank line holds no record


@pytest.mark.parametrize("gzipped", [False, True])
def test_json_lines_upload_quarantines_broken_records(
    s3: Any, buckets: Any, settings: Settings, gzipped: bool
) -> None:
    # GIVEN a JSON-lines upload (maybe gzipped) with a missing field, a range breach and a broken line
    body = _broken_jsonl()
    upload = _put(
        s3, "uploads/churn/part.jsonl" + (".gz" if gzipped else ""), gzip.compress(body) if gzipped else body
    )
    # WHEN it is prepared in small chunks
    result = prepare_upload(upload, settings, s3=s3, curated_bucket="curated", chunk_rows=7, now=NOW)
    # THEN 40 rows are curated, 3 quarantined, each for its own rule
    assert (result.rows, result.curated_rows, result.quarantined_rows) == (43, 40, 3)
    report = json.loads(
        s3.get_object(Bucket="curated", Key=f"quarantine/churn/{upload.upload_id}/report.json")["Body"].read()
    )
    assert [(v["row"], v["rule"]) for v in report["violations"]] == [
        (40, "not_null"),
        (41, "range"),
        (42, "parse"),
    ]
    assert len(_curated(s3)) == 40


@pytest.mark.parametrize("gzipped", [False, True])
def test_parquet_upload_is_read_by_row_group_batches(
    s3: Any, buckets: Any, settings: Settings, gzipped: bool
) -> None:
    # GIVEN a Parquet upload of typed columns in row groups of 10, two rows breaking the contract
    frame = generate(55, seed=4)
    frame.loc[[5, 33], "monthly_charges"] = -3.0
    body = _parquet(frame)
    upload = _put(s3, "uploads/churn/part.parquet", gzip.compress(body) if gzipped else body)
    # WHEN it is prepared in batches of 8 rows
    result = prepare_upload(upload, settings, s3=s3, curated_bucket="curated", chunk_rows=8, now=NOW)
    # THEN types survive the round trip and the two rows are quarantined
    assert (result.curated_rows, result.quarantined_rows) == (53, 2)
    curated = _curated(s3)
    assert curated["event_time"].min() == frame["event_time"].min()
    assert set(curated["customer_id"]) == set(frame["customer_id"]) - {
        frame.customer_id[5],
        frame.customer_id[33],
    }


def test_a_corrupt_parquet_goes_whole_to_quarantine(s3: Any, buckets: Any, settings: Settings) -> None:
    body = _parquet(generate(30, seed=5))
    upload = _put(s3, "uploads/churn/broken.parquet", body[:-40])  # footer cut off
    result = prepare_upload(upload, settings, s3=s3, curated_bucket="curated", now=NOW)
    assert result.curated_rows == 0 and result.reason
    assert find_manifest(s3, "curated", upload.upload_id).reason == result.reason  # type: ignore[union-attr]


def test_manifest_names_the_source_version_and_the_curated_version(
    s3: Any, buckets: Any, settings: Settings
) -> None:
    # GIVEN an upload with one broken row
    frame = generate(30, seed=6).astype({"age": "string"})
    frame.loc[2, "contract"] = "weekly"
    upload = _put(s3, "uploads/churn/a.csv", frame.to_csv(index=False).encode())
    # WHEN it is prepared
    result = prepare_upload(upload, settings, s3=s3, curated_bucket="curated", now=NOW)
    # THEN its manifest, at a stable key, names source and curated object versions, hashes and counts
    manifest = read_manifest(s3, "curated", f"manifests/churn/{upload.upload_id}.json")
    assert result.manifest_uri == f"s3://curated/manifests/churn/{upload.upload_id}.json"
    assert manifest.source["version_id"] == upload.version_id and manifest.format == "csv"
    assert (manifest.rows, manifest.curated_rows, manifest.quarantined_rows) == (30, 29, 1)
    (obj,) = manifest.objects
    head = s3.head_object(Bucket="curated", Key=obj.key)
    assert (obj.version_id, obj.partition) == (head["VersionId"], "ingest_date=2026-02-01")
    assert manifest.partitions == ["ingest_date=2026-02-01"] and len(manifest.schema_hash) == 64
    assert manifest.quarantine_uri == f"s3://curated/quarantine/churn/{upload.upload_id}/"


@pytest.fixture
def recorders(moto_aws: None, settings: Settings) -> Recorders:
    glue = boto3.client("glue", region_name=REGION)
    glue.create_database(DatabaseInput={"Name": "lake"})
    contract = settings.problem.dataset
    glue.create_table(
        DatabaseName="lake",
        TableInput={
            "Name": catalog.table_name(contract.name),
            "PartitionKeys": [{"Name": catalog.PARTITION_KEY, "Type": "string"}],
            "StorageDescriptor": catalog.storage_descriptor(contract, "s3://curated/curated/churn/"),  # type: ignore[typeddict-item]
        },
    )
    db = boto3.client("dynamodb", region_name=REGION)
    make_key_table(db, "lineage")
    return Recorders(glue=glue, glue_database="lake", lineage=lin.LineageStore("lineage", client=db))


def test_partitions_are_registered_once(
    s3: Any, buckets: Any, settings: Settings, recorders: Recorders
) -> None:
    # GIVEN two uploads on the same day
    for name, seed in (("a.csv", 7), ("b.csv", 8)):
        upload = _put(s3, f"uploads/churn/{name}", generate(20, seed=seed).to_csv(index=False).encode())
        # WHEN each is prepared
        prepare_upload(upload, settings, s3=s3, curated_bucket="curated", now=NOW, recorders=recorders)
    # THEN the day's partition exists once, pointing at its prefix, with the table's columns
    (partition,) = recorders.glue.get_partitions(DatabaseName="lake", TableName="churn")["Partitions"]  # type: ignore[union-attr]
    assert partition["Values"] == ["2026-02-01"]
    assert partition["StorageDescriptor"]["Location"] == "s3://curated/curated/churn/ingest_date=2026-02-01/"
    assert [c["Name"] for c in partition["StorageDescriptor"]["Columns"]][:2] == ["customer_id", "event_time"]


def test_lineage_chain_from_upload_to_training_set(
    s3: Any, buckets: Any, settings: Settings, recorders: Recorders
) -> None:
    # GIVEN an upload prepared with lineage, then a training set built from the curated data
    make_bucket(s3, "artifacts")
    upload = _put(s3, "uploads/churn/a.csv", generate(200, seed=9).to_csv(index=False).encode())
    prepare_upload(upload, settings, s3=s3, curated_bucket="curated", now=NOW, recorders=recorders)
    store = recorders.lineage
    assert store is not None
    build_training_set(
        settings.problem,
        s3=s3,
        curated_bucket="curated",
        artifacts_bucket="artifacts",
        training_set_id="run-1",
        lineage=store,
    )
    # WHEN the training set's chain is traced upstream and the upload's downstream
    up = store.trace("training_set:run-1", "upstream")
    down = store.trace(f"upload:{upload.upload_id}", "downstream")
    # THEN both name the same chain: upload -> prepare -> curated version -> build -> training set
    curated_id = f"curated_version:{upload.upload_id}"
    assert [n.id for n in up.children] == ["build_training_set:run-1"]
    assert up.children[0].children[0].id == curated_id
    assert up.children[0].children[0].children[0].children[0].id == f"upload:{upload.upload_id}"
    (prepare,) = down.children
    assert curated_id in [c.id for c in prepare.children]
    text = lin.render(
        store.artifact(curated_id), store.trace(curated_id, "upstream"), store.trace(curated_id, "downstream")
    )
    assert "<- prepare_data:" in text and "-> training_set:run-1" in text
    # AND the training set manifest names the dataset version (upload manifest and its S3 version)
    manifest = json.loads(
        s3.get_object(Bucket="artifacts", Key="training-sets/run-1/manifest.json")["Body"].read()
    )
    (version,) = manifest["dataset_versions"]
    assert version["upload_id"] == upload.upload_id and version["manifest_version_id"]
    assert store.resolve(upload.upload_id) == f"upload:{upload.upload_id}"
