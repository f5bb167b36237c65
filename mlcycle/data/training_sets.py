"""Training sets: curated data of a dataset -> a train/test split in the artifacts bucket, with a manifest.

The split is by a hash of the entity key, so an entity never lands on both sides and a rerun over the
same data gives the same split. The manifest names every curated object (with its S3 version) the set
was built from.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from mlcycle.config import ProblemConfig


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
            {"key": obj["Key"], "version_id": body.get("VersionId"), "etag": obj["ETag"].strip('"')}
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
    manifest = asdict(result) | {
        "sources": sources,
        "seed": problem.seed,
        "test_fraction": problem.test_fraction,
    }
    s3.put_object(
        Bucket=artifacts_bucket, Key=f"{prefix}manifest.json", Body=json.dumps(manifest, indent=2).encode()
    )
    return result
