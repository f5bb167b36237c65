"""Training sets: curated data of a dataset -> a train/test split in the artifacts bucket, with a manifest.

The split is by a hash of the entity key, so an entity never lands on both sides and a rerun over the
same data gives the same split. The manifest names every curated object (with its S3 version) the set
was built from and the dataset versions (upload manifests, with their S3 versions) those belong to;
lineage records curated versions -> build -> training set.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from mlcycle import lineage as lin
from mlcycle.config import ProblemConfig
from mlcycle.data.manifests import manifest_key, upload_id_of


class InsufficientDataError(ValueError):
    """Too few curated rows to train on."""


@dataclass
class TrainingSet:
    training_set_id: str
    dataset: str
    train_uri: str
    test_uri: str
    manifest_uri: str
    train_rows: int
    test_rows: int


def _list_objects(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    paginator = s3.get_paginator("list_objects_v2")
    return [o for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]


def _read_curated(s3: Any, bucket: str, dataset: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    sources, frames = [], []
    for obj in _list_objects(s3, bucket, f"curated/{dataset}/"):
        if not obj["Key"].endswith(".parquet"):
            continue
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])
        frames.append(pd.read_parquet(io.BytesIO(body["Body"].read())))
        sources.append(
            {
                "key": obj["Key"],
                "version_id": body.get("VersionId"),
                "etag": obj["ETag"].strip('"'),
                "upload_id": upload_id_of(obj["Key"]),
            }
        )
    if not frames:
        raise InsufficientDataError(
            f"no curated data for dataset {dataset!r} in s3://{bucket}/curated/{dataset}/"
        )
    return pd.concat(frames, ignore_index=True), sources


def split(frame: pd.DataFrame, problem: ProblemConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latest row per key, then a deterministic hash split on the key."""
    contract = problem.dataset
    if contract.key is not None:
        if contract.event_time is not None:
            frame = frame.sort_values(contract.event_time, kind="stable")
        frame = frame.drop_duplicates(contract.key, keep="last")
        salted = frame[contract.key].astype(str) + f":{problem.seed}"
    else:
        salted = pd.Series(range(len(frame)), index=frame.index).astype(str) + f":{problem.seed}"
    buckets = salted.map(lambda s: int(hashlib.md5(s.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF)
    is_test = buckets < problem.test_fraction
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)


def build_training_set(
    problem: ProblemConfig,
    *,
    s3: Any,
    curated_bucket: str,
    artifacts_bucket: str,
    training_set_id: str,
    min_rows: int = 50,
    lineage: lin.LineageStore | None = None,
) -> TrainingSet:
    dataset = problem.dataset.name
    frame, sources = _read_curated(s3, curated_bucket, dataset)
    train, test = split(frame, problem)
    if len(train) < min_rows or len(test) == 0:
        raise InsufficientDataError(f"{len(train)} training and {len(test)} test rows; need {min_rows} and 1")
    prefix = f"training-sets/{training_set_id}/"
    for name, part in (("train", train), ("test", test)):
        buffer = io.BytesIO()
        part.to_parquet(buffer, index=False)
        s3.put_object(Bucket=artifacts_bucket, Key=f"{prefix}{name}/data.parquet", Body=buffer.getvalue())
    result = TrainingSet(
        training_set_id=training_set_id,
        dataset=dataset,
        train_uri=f"s3://{artifacts_bucket}/{prefix}train/",
        test_uri=f"s3://{artifacts_bucket}/{prefix}test/",
        manifest_uri=f"s3://{artifacts_bucket}/{prefix}manifest.json",
        train_rows=len(train),
        test_rows=len(test),
    )
    versions = _dataset_versions(s3, curated_bucket, dataset, sources)
    manifest = asdict(result) | {
        "sources": sources,
        "dataset_versions": versions,
        "seed": problem.seed,
        "test_fraction": problem.test_fraction,
    }
    s3.put_object(
        Bucket=artifacts_bucket, Key=f"{prefix}manifest.json", Body=json.dumps(manifest, indent=2).encode()
    )
    if lineage is not None:
        _record_lineage(lineage, result, versions)
    return result


def _dataset_versions(
    s3: Any, bucket: str, dataset: str, sources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The upload manifest (and its S3 version) of every curated object read: the data's versions."""
    versions = []
    for upload_id in sorted({s["upload_id"] for s in sources}):
        key = manifest_key(dataset, upload_id)
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError:
            head = None  # curated data written before manifests existed
        versions.append(
            {
                "upload_id": upload_id,
                "manifest": f"s3://{bucket}/{key}" if head else None,
                "manifest_version_id": head.get("VersionId") if head else None,
                "objects": [s["key"] for s in sources if s["upload_id"] == upload_id],
            }
        )
    return versions


def _record_lineage(store: lin.LineageStore, result: TrainingSet, versions: list[dict[str, Any]]) -> None:
    inputs = [
        lin.Artifact(
            lin.artifact_id(lin.CURATED_VERSION, v["upload_id"]),
            lin.CURATED_VERSION,
            v["manifest"] or "",
            {"manifest_version_id": v["manifest_version_id"]},
        )
        for v in versions
    ]
    output = lin.Artifact(
        lin.artifact_id(lin.TRAINING_SET, result.training_set_id),
        lin.TRAINING_SET,
        result.manifest_uri,
        {"train_rows": result.train_rows, "test_rows": result.test_rows, "dataset": result.dataset},
    )
    execution = lin.Execution(
        lin.artifact_id(lin.BUILD_TRAINING_SET, result.training_set_id), lin.BUILD_TRAINING_SET
    )
    store.record(execution, inputs=inputs, outputs=[output])
