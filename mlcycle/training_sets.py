"""Training sets: curated data of a dataset -> a train/test split in the artifacts bucket, with a manifest.

The split is by a hash of the entity key, so an entity never lands on both sides and a rerun over the
same data gives the same split. The manifest names every curated object (with its S3 version) the set
was built from and the dataset versions (upload manifests, with their S3 versions) those belong to;
lineage records curated versions -> build -> training set.

Point in time (when the settings declare feature views providing every feature of the problem): the
curated rows give only the entity rows (key, event time, target; latest row per key), and the features
come from the feature store's offline views as of each row's event time (``get_historical_features``),
each view's chosen event time kept as ``{view}{feature_time_suffix}`` so the pre-training leakage check
runs on it. Without such views the curated rows' own columns are the features, as before.

A training window (``retraining.training_window_days``) keeps only the rows whose event time lies within
that many days of the newest one, before anything else (the manifest and the lineage record it), so a
model retrained after the world changed learns from how it is now.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from botocore.exceptions import ClientError

from mlcycle import lineage as lin
from mlcycle.aws import s3_absent
from mlcycle.config import FeatureViewSpec, ProblemConfig
from mlcycle.data.manifests import manifest_key, upload_id_of
from mlcycle.features.store import FeatureStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectTypeDef

#: Above this fraction of entity rows without a value from some view, the build refuses (the offline
#: store lacks the data: ingestion has not run or is behind); below it those rows are left out.
MAX_ROWS_WITHOUT_FEATURES = 0.5


class InsufficientDataError(ValueError):
    """Too few curated rows to train on."""


class ManifestUnreadableError(RuntimeError):
    """An upload manifest exists or may exist but could not be read (access denied, throttled, ...)."""


@dataclass
class TrainingSet:
    training_set_id: str
    dataset: str
    train_uri: str
    test_uri: str
    manifest_uri: str
    train_rows: int
    test_rows: int
    #: The training window applied (days, the event times it spans, rows before and kept), or None.
    training_window: dict[str, Any] | None = None


def _list_objects(s3: S3Client, bucket: str, prefix: str) -> list[ObjectTypeDef]:
    paginator = s3.get_paginator("list_objects_v2")
    return [o for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]


def _read_curated(s3: S3Client, bucket: str, dataset: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
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


def latest(frame: pd.DataFrame, problem: ProblemConfig) -> pd.DataFrame:
    """The latest row per key (by event time, then input order); every row when the contract has no key."""
    contract = problem.dataset
    if contract.key is None:
        return frame
    if contract.event_time is not None:
        frame = frame.sort_values(contract.event_time, kind="stable")
    return frame.drop_duplicates(contract.key, keep="last")


def within_window(
    frame: pd.DataFrame, problem: ProblemConfig, days: float
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows whose event time lies within ``days`` of the newest event time, and what was kept."""
    column = problem.dataset.event_time
    if column is None:
        raise InsufficientDataError(
            f"a training window of {days:g} days needs an event time, and dataset {problem.dataset.name!r} "
            "declares none (set dataset.event_time, or training_window_days to null)"
        )
    times = pd.to_datetime(frame[column], utc=True, errors="coerce")
    newest = times.max()
    if pd.isna(newest):
        raise InsufficientDataError(f"no row of dataset {problem.dataset.name!r} has a {column!r}")
    start = newest - pd.Timedelta(days=days)
    kept = frame[(times >= start).to_numpy()].reset_index(drop=True)
    window = {
        "days": days,
        "event_time": column,
        "start": start.isoformat(),
        "end": newest.isoformat(),
        "rows_before": len(frame),
        "rows_kept": len(kept),
    }
    return kept, window


def covering_views(views: tuple[FeatureViewSpec, ...], problem: ProblemConfig) -> list[FeatureViewSpec]:
    """The views (in settings order) that provide the problem's features, keyed by the dataset's key.

    Empty unless every feature is provided and the contract has a key and an event time to join on.
    """
    contract = problem.dataset
    if contract.key is None or contract.event_time is None:
        return []
    usable = [v for v in views if v.entity_keys == (contract.key,)]
    chosen: list[FeatureViewSpec] = []
    for feature in problem.features:
        view = next((v for v in usable if feature in v.feature_names), None)
        if view is None:
            return []
        if view not in chosen:
            chosen.append(view)
    return chosen


def split(frame: pd.DataFrame, problem: ProblemConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latest row per key, then a deterministic hash split on the key."""
    contract = problem.dataset
    frame = latest(frame, problem)
    if contract.key is not None:
        salted = frame[contract.key].astype(str) + f":{problem.seed}"
    else:
        salted = pd.Series(range(len(frame)), index=frame.index).astype(str) + f":{problem.seed}"
    buckets = salted.map(lambda s: int(hashlib.md5(s.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF)
    is_test = buckets < problem.test_fraction
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)


def build_training_set(
    problem: ProblemConfig,
    *,
    s3: S3Client,
    curated_bucket: str,
    artifacts_bucket: str,
    training_set_id: str,
    min_rows: int = 50,
    lineage: lin.LineageStore | None = None,
    feature_store: FeatureStore | None = None,
    feature_time_suffix: str = "__event_time",
    glue_database: str | None = None,
    window_days: float | None = None,
) -> TrainingSet:
    """Curated rows (within ``window_days`` of the newest event time, when given; or, with a store whose
    views cover the features, entity rows joined point in time) -> train/test Parquet and a manifest.
    Raises :class:`InsufficientDataError` on too little data."""
    dataset = problem.dataset.name
    frame, sources = _read_curated(s3, curated_bucket, dataset)
    window = None
    if window_days is not None:
        frame, window = within_window(frame, problem, window_days)
    views = covering_views(feature_store.views, problem) if feature_store is not None else []
    point_in_time: dict[str, Any] = {"feature_views": [], "rows_without_features": 0}
    if feature_store is not None and views:
        frame, point_in_time = _point_in_time(
            frame, problem, feature_store, views, suffix=feature_time_suffix, glue_database=glue_database
        )
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
        training_window=window,
    )
    versions = _dataset_versions(s3, curated_bucket, dataset, sources)
    manifest = asdict(result) | {
        "sources": sources,
        "dataset_versions": versions,
        "seed": problem.seed,
        "test_fraction": problem.test_fraction,
        **point_in_time,
    }
    s3.put_object(
        Bucket=artifacts_bucket, Key=f"{prefix}manifest.json", Body=json.dumps(manifest, indent=2).encode()
    )
    if lineage is not None:
        _record_lineage(lineage, result, versions)
    return result


def _point_in_time(
    frame: pd.DataFrame,
    problem: ProblemConfig,
    store: FeatureStore,
    views: list[FeatureViewSpec],
    *,
    suffix: str,
    glue_database: str | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Entity rows (key, event time, target of the latest row per key) with the views' features as of
    their event time; rows some view has no value for are left out, unless they are most rows."""
    contract = problem.dataset
    assert contract.key is not None and contract.event_time is not None  # covering_views checked
    entity = latest(frame, problem)[[contract.key, contract.event_time, problem.target]]
    joined = store.get_historical_features(
        entity.reset_index(drop=True),
        [v.name for v in views],
        timestamp_column=contract.event_time,
        event_time_suffix=suffix,
    ).to_pandas()
    stamps = [f"{v.name}{suffix}" for v in views]
    unmatched = joined[stamps].isna().any(axis=1)
    missing = int(unmatched.sum())
    locations = {v.name: store.offline.location(v.name) for v in views}
    if len(joined) and missing > MAX_ROWS_WITHOUT_FEATURES * len(joined):
        per_view = ", ".join(
            f"{v.name}: {int(joined[s].isna().sum())}" for v, s in zip(views, stamps, strict=True)
        )
        raise InsufficientDataError(
            f"{missing} of {len(joined)} entity rows of dataset {contract.name!r} have no feature values "
            f"as of their {contract.event_time!r} ({per_view} rows without a value) in the offline store "
            f"({', '.join(locations.values())}); ingest the curated data into the feature views first"
        )
    described = [
        {
            "name": v.name,
            "features": list(v.feature_names),
            "offline_uri": locations[v.name],
            "glue_table": f"{glue_database}.{v.name}" if glue_database else None,
            "ttl_seconds": v.ttl_seconds,
            "event_time_column": f"{v.name}{suffix}",
        }
        for v in views
    ]
    kept = joined[~unmatched].reset_index(drop=True)
    return kept, {"feature_views": described, "rows_without_features": missing}


def _dataset_versions(
    s3: S3Client, bucket: str, dataset: str, sources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The upload manifest (and its S3 version) of every curated object read: the data's versions."""
    versions = []
    for upload_id in sorted({s["upload_id"] for s in sources}):
        key = manifest_key(dataset, upload_id)
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if not s3_absent(error):  # denied or failed: the lineage would claim data without a manifest
                raise ManifestUnreadableError(
                    f"cannot read the upload manifest s3://{bucket}/{key} of the training data: "
                    f"{error.response.get('Error', {}).get('Code', '')}: {error}"
                ) from error
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
        {
            "train_rows": result.train_rows,
            "test_rows": result.test_rows,
            "dataset": result.dataset,
            **({"training_window": result.training_window} if result.training_window else {}),
        },
    )
    execution = lin.Execution(
        lin.artifact_id(lin.BUILD_TRAINING_SET, result.training_set_id), lin.BUILD_TRAINING_SET
    )
    store.record(execution, inputs=inputs, outputs=[output])
