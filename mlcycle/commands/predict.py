"""``mlcycle predict INPUT --out OUTPUT``: batch predictions with a registered model version, as a SageMaker
batch transform job (on the embedded AWS while ``mlcycle local up`` runs, else on the deployed stack)."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.config import Settings

if TYPE_CHECKING:
    from mlcycle.batch import BatchOptions, InputListing, Progress

DESCRIPTION = """\
Score a file, a directory or an S3 prefix with a registered model version (the champion unless --model
names one) in a SageMaker batch transform job: every object is split by line, sent to the model in
mini-batches of up to --max-payload-mb, and answered line for line into OUTPUT.

INPUT   a local file or directory (uploaded to the artifacts bucket under the job's prefix), or an
        s3:// prefix (every object under it). CSV rows hold the model's features in its order with no
        header; JSON lines hold one record ({"feature": value, ...}) per line, extra fields allowed.
OUTPUT  a local file (one input file) or directory (downloaded when the job ends), or an s3:// prefix
        (each input object's answers land there as <object>.out, as SageMaker writes them).

Each output line answers its input line: for CSV, the label and the class probabilities; for JSON lines,
{"prediction", "probabilities"}. --join-input puts the input row in front (CSV) or keeps the record's
fields beside SageMakerOutput (JSON lines). A bad record fails the job with the object and line it is on.

The job's name comes from the request (model version, input, output, options): running the same command
again finds the job it started instead of starting another, so Ctrl-C only stops the waiting and
--no-wait followed by the same command with --wait picks the job up again.
"""
CONTENT_TYPES = {
    ".csv": "text/csv",
    ".jsonl": "application/jsonlines",
    ".jsonlines": "application/jsonlines",
}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """The input: an S3 prefix, or local files to upload (``files``: path and name under the prefix)."""

    listing: InputListing
    files: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def local(self) -> bool:
        return bool(self.files)

    def suffix(self) -> str:
        name = self.files[0][1] if self.files else self.listing.first
        return Path(name).suffix.lower()


def _local_source(path: Path) -> Source:
    """The files of ``path`` with a digest of their names and contents (read in chunks)."""
    from mlcycle.batch import InputListing

    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    found = [(path, path.name)] if path.is_file() else _files_under(path)
    if not found:
        raise FileNotFoundError(f"{path} holds no files to predict")
    digest, size = hashlib.sha256(), 0
    for file, name in found:
        digest.update(name.encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return Source(InputListing(str(path), len(found), size, digest.hexdigest()), found)


def _files_under(directory: Path) -> list[tuple[Path, str]]:
    return [
        (file, file.relative_to(directory).as_posix())
        for file in sorted(directory.rglob("*"))
        if file.is_file() and not any(part.startswith(".") for part in file.relative_to(directory).parts)
    ]


def _options(args: argparse.Namespace, source: Source) -> BatchOptions:
    from mlcycle.batch import BatchOptions

    content_type = args.content_type or CONTENT_TYPES.get(source.suffix())
    if content_type is None:
        # A .json document spans lines, and the job splits by line: it needs one record per line.
        raise ValueError(
            f"cannot tell the content type of {source.listing.uri}: pass --content-type (CSV rows, or JSON "
            "lines: one record per line, .jsonl)"
        )
    return BatchOptions(
        content_type=content_type,
        accept=args.accept,
        join_input=args.join_input,
        max_payload_mb=args.max_payload_mb,
        max_concurrent_transforms=args.max_concurrent,
    )


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle import batch
    from mlcycle.application.connect import connect

    connection = connect(settings)
    sagemaker, s3 = connection.client("sagemaker"), connection.client("s3")
    platform = connection.platform
    if not platform.sagemaker_role:
        raise LookupError(
            "the platform exports no SageMaker execution role (output SageMakerRoleArn): redeploy the stack "
            "(cdk deploy), or restart the embedded AWS (mlcycle local down; mlcycle local up)"
        )
    source = _local_source(Path(args.input)) if not args.input.startswith("s3://") else None
    source = source or Source(batch.list_input(s3, args.input))
    options = _options(args, source)
    package = batch.model_package(sagemaker, settings, args.model)
    s3_output = args.out if args.out.startswith("s3://") else None

    def name_of(attempt: int) -> str:
        return batch.job_name(
            settings, package["ModelPackageArn"], source.listing, s3_output, options=options, attempt=attempt
        )

    def output_of(name: str) -> str:
        return s3_output or batch.workspace(platform.artifacts_bucket, name)[1]

    def request_of(name: str) -> dict[str, Any]:
        input_uri = source.listing.uri
        if source.local:
            input_uri = batch.workspace(platform.artifacts_bucket, name)[0]
            _upload(s3, source, input_uri)
        model = batch.ensure_model(sagemaker, settings, package, platform.sagemaker_role)
        return batch.transform_request(
            settings,
            name=name,
            model_name=model,
            input_uri=input_uri,
            output_uri=output_of(name),
            options=options,
        )

    started = batch.start(sagemaker, name_of, request_of)
    version = package["ModelPackageArn"].rsplit("/", 1)[-1]
    verb = "started" if started.created else f"found ({started.status})"
    print(
        f"{verb} transform job {started.name}: model version {version}, "
        f"{source.listing.objects} object(s), {source.listing.bytes:,} bytes"
    )
    output_uri = output_of(started.name)
    if not args.wait:
        print(f"answers will be under {output_uri}; run the same command with --wait to wait and fetch them")
        return 0
    print("waiting (Ctrl-C stops the waiting, not the job; the same command picks it up again)")
    described = batch.wait(
        sagemaker,
        started.name,
        s3=s3,
        output_uri=output_uri,
        total=source.listing.objects,
        on_progress=_progress_printer(),
        poll_seconds=args.poll_seconds if args.poll_seconds is not None else (1 if connection.local else 10),
    )
    if described["TransformJobStatus"] != "Completed":
        reason = batch.failure(described)
        input_prefix = batch.workspace(platform.artifacts_bucket, started.name)[0]
        for path, name in source.files:  # name the user's own file, not the copy the job read
            reason = reason.replace(f"{input_prefix}{name} ", f"{path} ")
        print(f"mlcycle: error: {reason}", file=sys.stderr)
        print(
            f"logs: CloudWatch Logs /aws/sagemaker/TransformJobs, streams {started.name}/*", file=sys.stderr
        )
        return 1
    if s3_output:
        print(f"answers under {output_uri}")
        return 0
    for path, lines in _download(s3, output_uri, Path(args.out)):
        print(f"wrote {path} ({lines:,} lines)")
    return 0


def _upload(s3: Any, source: Source, input_uri: str) -> None:
    from mlcycle.batch import split_uri

    bucket, prefix = split_uri(input_uri)
    for path, name in source.files:
        s3.upload_file(str(path), bucket, f"{prefix}{name}")  # multipart for large files: bounded memory


def _progress_printer() -> Callable[[Progress], None]:
    """Prints a line whenever the status or the count of finished objects changes."""
    last: list[tuple[str, int]] = []

    def show(progress: Progress) -> None:
        state = (progress.status, progress.done)
        if last and last[-1] == state:
            return
        last.append(state)
        print(f"  {progress.status:<11} {progress.done}/{progress.total} objects  {progress.elapsed:5.0f}s")

    return show


def _download(s3: Any, output_uri: str, out: Path) -> list[tuple[Path, int]]:
    """Fetch the ``.out`` objects: one into ``out`` as a file, several (or ``out`` a directory) into it
    under their names below the output prefix."""
    from mlcycle.batch import outputs_written, split_uri

    bucket, prefix = split_uri(output_uri.rstrip("/") + "/")
    keys = sorted(outputs_written(s3, output_uri))
    if not keys:  # the input had objects, so a completed job that wrote no answer lost them
        raise LookupError(f"the job completed but wrote no .out object under {output_uri}")
    as_directory = len(keys) > 1 or out.is_dir() or str(out).endswith(("/", "\\"))
    written = []
    for key in keys:
        target = out / key[len(prefix) :] if as_directory else out
        if ".." in Path(key[len(prefix) :]).parts:  # an S3 key must not write outside OUTPUT
            raise ValueError(f"refusing to write s3://{bucket}/{key} outside {out}")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        written.append((target, _count_lines(target)))
    return written


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(_CHUNK), b""))


def add_parser(subparsers: Any) -> None:
    predict = subparsers.add_parser(
        "predict",
        help="batch predictions with a registered model (SageMaker batch transform)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("input", metavar="INPUT", help="a local file or directory, or an s3:// prefix")
    predict.add_argument("--out", required=True, metavar="OUTPUT", help="a local file or directory, or s3://")
    predict.add_argument("--model", metavar="VERSION", help="a version number or ARN (default: the champion)")
    predict.add_argument(
        "--content-type",
        help="the input's type (default: by suffix: .csv text/csv, .jsonl application/jsonlines)",
    )
    predict.add_argument(
        "--accept", help="the answers' type: text/csv or application/jsonlines (default: the input's type)"
    )
    predict.add_argument(
        "--join-input", action="store_true", help="write each input record beside its prediction"
    )
    predict.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for the job, showing progress, and fetch a local OUTPUT (default: --wait)",
    )
    predict.add_argument(
        "--max-payload-mb", type=int, default=6, help="mini-batch size limit (1-100, default 6)"
    )
    predict.add_argument(
        "--max-concurrent",
        type=int,
        help="requests in flight per instance (default: what the model server says)",
    )
    predict.add_argument(
        "--poll-seconds", type=float, help="how often --wait checks the job (default: 1 locally, 10 in AWS)"
    )
    predict.set_defaults(func=cmd_predict)
