"""``mlcycle data upload | list | show``: uploads and the dataset versions they became.

Works against the running embedded AWS (``mlcycle local up``) or the deployed stack, through
:func:`mlcycle.commands.connect.connect`. A dataset version is an upload's manifest in the curated bucket.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlcycle.config import Settings


def cmd_upload(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.application.connect import connect
    from mlcycle.data.prepare import Upload

    connection = connect(settings)
    s3, platform = connection.client("s3"), connection.platform
    path = Path(args.file)
    dataset = args.dataset or settings.problem.dataset.name
    key = f"uploads/{dataset}/{path.name}"
    s3.upload_file(str(path), platform.landing_bucket, key)
    version = s3.head_object(Bucket=platform.landing_bucket, Key=key).get("VersionId")
    upload = Upload(platform.landing_bucket, key, version)
    print(f"uploaded {path} to s3://{platform.landing_bucket}/{key} (upload {upload.upload_id})")
    if not args.wait:
        return 0
    from mlcycle.application.cycle import wait_for_manifest

    manifest = wait_for_manifest(s3, platform.curated_bucket, dataset, upload.upload_id, args.timeout)
    if manifest is None:
        print(f"no result within {args.timeout:.0f}s; later: mlcycle data show {upload.upload_id}")
        return 1
    _print_result(manifest)
    if manifest.reason is None and manifest.curated_rows and dataset == settings.problem.dataset.name:
        # Features are ingested asynchronously after the check: a training started before they are in
        # would find no feature values for these rows.
        from mlcycle.application.cycle import CycleError, wait_for_features

        try:
            keys = [obj.key for obj in manifest.objects]
            wait_for_features(s3, platform, settings, keys, print, timeout=args.timeout)
        except CycleError as exc:
            print(f"{exc}; ingestion may still be running (re-run it with: mlcycle features ingest)")
            return 1
    return 0 if manifest.reason is None else 2


def _print_result(manifest: Any) -> None:
    print(
        f"{manifest.rows} rows: {manifest.curated_rows} curated, {manifest.quarantined_rows} quarantined"
        + (f" ({manifest.summary})" if manifest.quarantined_rows or manifest.reason else "")
    )
    if manifest.quarantine_uri:
        print(f"quarantine: {manifest.quarantine_uri}")


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.application.connect import connect
    from mlcycle.data.manifests import manifest_keys, read_manifest

    connection = connect(settings)
    s3, bucket = connection.client("s3"), connection.platform.curated_bucket
    manifests = [read_manifest(s3, bucket, o["Key"]) for o in manifest_keys(s3, bucket, args.dataset)]
    if not manifests:
        print("no dataset versions yet")
        return 0
    header = f"{'upload':<18}{'dataset':<12}{'created':<27}{'rows':>9}{'curated':>9}{'quarant.':>9}  source"
    print(header)
    for m in manifests:
        print(
            f"{m.upload_id:<18}{m.dataset:<12}{m.created_at:<27}{m.rows:>9}{m.curated_rows:>9}"
            f"{m.quarantined_rows:>9}  {m.source['key']}"
        )
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.application.connect import connect
    from mlcycle.data.manifests import find_manifest

    connection = connect(settings)
    manifest = find_manifest(connection.client("s3"), connection.platform.curated_bucket, args.upload_id)
    if manifest is None:
        print(f"no dataset version for upload {args.upload_id}")
        return 1
    print(manifest.to_json() if args.json else _describe(manifest))
    return 0


def _describe(manifest: Any) -> str:
    source, m = manifest.source, manifest
    lines = [
        f"upload {m.upload_id} of dataset {m.dataset} ({m.format}), {m.created_at}",
        f"  source      s3://{source['bucket']}/{source['key']} version {source.get('version_id')}",
        f"  rows        {m.rows}: {m.curated_rows} curated, {m.quarantined_rows} quarantined",
        f"  summary     {manifest.summary}",
        f"  schema      {manifest.schema_hash[:16]}  content {str(manifest.content_hash)[:16]}",
        *(f"  curated     {o.key} version {o.version_id} ({o.rows} rows)" for o in manifest.objects),
    ]
    if manifest.quarantine_uri:
        lines.append(f"  quarantine  {manifest.quarantine_uri}")
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="upload data and inspect dataset versions")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    upload = actions.add_parser("upload", help="upload a file (CSV, JSON lines, Parquet; gzip too)")
    upload.add_argument("file")
    upload.add_argument("--dataset", help="dataset name (default: the configured problem's)")
    upload.add_argument(
        "--wait",
        action="store_true",
        help="wait for the contract check and the feature ingestion, and report them",
    )
    upload.add_argument("--timeout", type=float, default=300, help="seconds --wait waits (default 300)")
    upload.set_defaults(func=cmd_upload)

    listing = actions.add_parser("list", help="dataset versions (one per upload), oldest first")
    listing.add_argument("dataset", nargs="?", help="only this dataset")
    listing.set_defaults(func=cmd_list)

    show = actions.add_parser("show", help="one upload's dataset version: source, counts, objects")
    show.add_argument("upload_id")
    show.add_argument("--json", action="store_true", help="the manifest as stored")
    show.set_defaults(func=cmd_show)
