"""S3 and CloudWatch Logs through boto3 against the embedded AWS; tar.gz archives."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.local.context import LocalContext

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def boto_client(ctx: LocalContext, service: str) -> Any:
    """One client per service of the running embedded AWS, kept on its context: boto3 clients are
    thread-safe (sessions are not) and cost ~0.2 s to make."""
    with ctx.clients_lock:
        if service not in ctx.clients:
            import boto3

            ctx.clients[service] = boto3.session.Session().client(
                service,  # type: ignore[call-overload]
                endpoint_url=ctx.endpoint_url,
                region_name=ctx.region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return ctx.clients[service]


def s3_client(ctx: LocalContext) -> S3Client:
    client: S3Client = boto_client(ctx, "s3")
    return client


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def download_s3_prefix(s3: S3Client, uri: str, dest: Path) -> int:
    """Copy every object under an S3 prefix into ``dest``, keeping paths relative to the prefix.

    A URI naming one object lands as ``dest/{basename}``. Returns the number of files written.
    """
    bucket, prefix = split_s3_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            key = entry["Key"]
            relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
            if key.endswith("/") or ".." in Path(relative).parts:  # folder markers, hostile keys
                continue
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            with target.open("wb") as out:
                shutil.copyfileobj(body, out)
            count += 1
    return count


def download_s3_file(s3: S3Client, uri: str, target: Path) -> Path:
    bucket, key = split_s3_uri(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        shutil.copyfileobj(s3.get_object(Bucket=bucket, Key=key)["Body"], out)
    return target


def extract_tar_gz(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths and .. escapes


def make_tar_gz(source: Path, archive: Path) -> Path:
    """Tar the *contents* of ``source`` (``model.joblib``, ``code/...`` at the top), as SageMaker does."""
    with tarfile.open(archive, "w:gz") as tar:
        for child in sorted(source.iterdir()) if source.is_dir() else []:
            tar.add(child, arcname=child.name)
    return archive


def upload_file(s3: S3Client, path: Path, uri: str) -> None:
    bucket, key = split_s3_uri(uri)
    s3.upload_file(str(path), bucket, key)


def upload_tree(s3: S3Client, source: Path, uri: str) -> None:
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        upload_file(s3, path, f"{uri.rstrip('/')}/{path.relative_to(source).as_posix()}")


class JobSetupError(Exception):
    """A job could not start (bad input, missing code): AWS reports these as ``ClientError: ...``."""
