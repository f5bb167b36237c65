"""Dataset versions: one manifest per curated write, at a stable key next to the data.

``s3://{curated}/manifests/{dataset}/{upload_id}.json`` names the source object (with its S3 version),
the row counts, a hash of the contract's schema, a hash of the curated content, the curated objects
(with their S3 versions) and partitions, and where the quarantined rows went. A training set manifest
links to these, so it names exactly the data it came from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlcycle.config import DatasetContract

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectTypeDef

MANIFEST_PREFIX = "manifests/"


@dataclass
class CuratedObject:
    key: str
    version_id: str | None
    etag: str
    rows: int
    partition: str


@dataclass
class DatasetManifest:
    upload_id: str
    dataset: str
    source: dict[str, Any]
    format: str
    rows: int
    curated_rows: int
    quarantined_rows: int
    schema_hash: str
    content_hash: str | None
    created_at: str
    objects: list[CuratedObject] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    quarantine_uri: str | None = None
    reason: str | None = None
    #: The short human summary of the contract check ("3 rows broke range on age; ...").
    summary: str = ""

    @property
    def key(self) -> str:
        return manifest_key(self.dataset, self.upload_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> DatasetManifest:
        body = json.loads(text)
        body["objects"] = [CuratedObject(**o) for o in body.get("objects", [])]
        return cls(**body)


def manifest_key(dataset: str, upload_id: str) -> str:
    return f"{MANIFEST_PREFIX}{dataset}/{upload_id}.json"


def schema_hash(contract: DatasetContract) -> str:
    """What the curated columns are: a change of contract gives a new hash, a rename of the file does not."""
    text = json.dumps([c.model_dump(mode="json") for c in contract.columns], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(s3: S3Client, bucket: str, manifest: DatasetManifest) -> str | None:
    """Put the manifest; returns its S3 version id."""
    answer = s3.put_object(
        Bucket=bucket, Key=manifest.key, Body=manifest.to_json().encode(), ContentType="application/json"
    )
    version: str | None = answer.get("VersionId")
    return version


def read_manifest(s3: S3Client, bucket: str, key: str, version_id: str | None = None) -> DatasetManifest:
    extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
    return DatasetManifest.from_json(s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read())


def manifest_keys(s3: S3Client, bucket: str, dataset: str | None = None) -> list[ObjectTypeDef]:
    """Listed manifest objects (Key, LastModified, ...), oldest first."""
    prefix = MANIFEST_PREFIX + (f"{dataset}/" if dataset else "")
    paginator = s3.get_paginator("list_objects_v2")
    found = [o for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]
    return sorted(
        (o for o in found if o["Key"].endswith(".json")), key=lambda o: (o["LastModified"], o["Key"])
    )


def find_manifest(s3: S3Client, bucket: str, upload_id: str) -> DatasetManifest | None:
    """The manifest of an upload whatever its dataset (the id is unique across datasets)."""
    for obj in manifest_keys(s3, bucket):
        if obj["Key"].endswith(f"/{upload_id}.json"):
            return read_manifest(s3, bucket, obj["Key"])
    return None


def upload_id_of(curated_key: str) -> str:
    """``curated/{dataset}/ingest_date=D/{upload_id}[-{part}].parquet`` -> ``upload_id``."""
    stem = curated_key.rsplit("/", 1)[-1].removesuffix(".parquet")
    return stem.split("-", 1)[0]
