"""Uploads too large for one function run: plan chunks, check each chunk apart, then conclude once.

The large-upload state machine (``infra/data_preparation.py``) runs :func:`plan` (one Lambda: stream the
object once and write the list of chunks to S3), a Distributed Map whose ItemReader reads that list and
runs :func:`process_chunk` per item (a Lambda each, in parallel), then :func:`finish` (one Lambda: the
cross-chunk key check, report, manifest, Glue partition, lineage, events) through the same code as the
single-function path.

Chunks are byte ranges at line ends for plain CSV and JSON lines, row groups for Parquet. A gzip stream
cannot be entered in the middle, so a gzipped upload is one chunk (read in bounded batches all the
same, within one function's time limit). CSV chunks are read as single-file uploads are
(:mod:`mlcycle.data.csv_lines`): a line that cannot be a row is quarantined alone, with its line number
in the upload.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq

from mlcycle.config import DatasetContract, Settings
from mlcycle.data import catalog
from mlcycle.data.contracts import KeyIndex, Violation
from mlcycle.data.manifests import CuratedObject
from mlcycle.data.prepare import (
    UNREADABLE,
    Findings,
    Outcome,
    PrepareResult,
    Recorders,
    Upload,
    _Sinks,
    check_chunks,
    check_csv,
    conclude,
    contract_for,
    file_hash,
    put_curated,
    quarantine_prefix,
)
from mlcycle.data.readers import GZIP_MAGIC, JSON_SUFFIXES, PARQUET_MAGIC, detect, read_chunks

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

STAGING_PREFIX = "staging/large-uploads/"
#: Rows a chunk holds (about 100 MB of the example's CSV): enough work to be worth a function run.
CHUNK_ROWS = 1_000_000
_BLOCK = 8 << 20


def start(sfn: SFNClient, state_machine_arn: str, upload: Upload) -> dict[str, Any]:
    """Start the state machine for an upload; named after the upload, so a repeat starts nothing new."""
    request = {"upload": _upload_dict(upload)}
    try:
        arn = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=upload.upload_id, input=json.dumps(request)
        )["executionArn"]
    except sfn.exceptions.ExecutionAlreadyExists:
        arn = f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{upload.upload_id}"
    return {"upload_id": upload.upload_id, "large_upload_execution": arn}


def _upload_dict(upload: Upload) -> dict[str, Any]:
    return {"bucket": upload.bucket, "key": upload.key, "version_id": upload.version_id}


def _version(upload: Upload) -> dict[str, Any]:
    return {"VersionId": upload.version_id} if upload.version_id else {}


def staging_prefix(upload_id: str) -> str:
    return f"{STAGING_PREFIX}{upload_id}/"


# -- plan ------------------------------------------------------------------------------------------------


def plan(
    request: dict[str, Any], *, s3: S3Client, curated_bucket: str, chunk_rows: int | None = None
) -> dict[str, Any]:
    """Stream the object once, write the chunk list to S3, return what every chunk needs to know."""
    upload = Upload(**request["upload"])
    chunk_rows = chunk_rows or CHUNK_ROWS  # read at call time: tests shrink it
    head = s3.get_object(Bucket=upload.bucket, Key=upload.key, Range="bytes=0-3", **_version(upload))
    magic = head["Body"].read()
    size = int(head["ContentRange"].rsplit("/", 1)[1]) if "ContentRange" in head else len(magic)
    header = ""
    if magic[:2] == GZIP_MAGIC:
        fmt, items = "gzip", [{"chunk": 0, "first_row": 0}]
    elif magic == PARQUET_MAGIC:
        fmt, items = "parquet", _row_groups(s3, upload, size)
    else:
        fmt = "jsonl" if upload.key.lower().endswith(JSON_SUFFIXES) else "csv"
        header, items = _line_ranges(s3, upload, chunk_rows, has_header=fmt == "csv")
    plan_key = staging_prefix(upload.upload_id) + "plan.json"
    s3.put_object(Bucket=curated_bucket, Key=plan_key, Body=json.dumps(items).encode())
    now = datetime.now(UTC)
    return {
        "upload": _upload_dict(upload),
        "format": fmt,
        "header": header,
        "plan_key": plan_key,
        "chunks": len(items),
        "now": now.isoformat(),
        "ingest_date": f"{now:%Y-%m-%d}",
        "size": size,
        "etag": head["ETag"].strip('"'),
    }


def _line_ranges(
    s3: S3Client, upload: Upload, chunk_rows: int, *, has_header: bool
) -> tuple[str, list[dict[str, Any]]]:
    """Byte ranges of ``chunk_rows`` lines each, found by counting line ends in one streamed read."""
    body = s3.get_object(Bucket=upload.bucket, Key=upload.key, **_version(upload))["Body"]
    header, offset, lines, starts = b"", 0, 0, [(0, 0)]
    need = chunk_rows + (1 if has_header else 0)  # the header line is not a row
    for block in body.iter_chunks(_BLOCK):
        if has_header and offset == 0:
            header = block[: block.find(b"\n") + 1]
            starts = [(len(header), 0)]
        position = 0
        while (count := block.count(b"\n", position)) >= need:
            position = _nth_line_end(block, position, need)
            lines += need
            starts.append((offset + position, lines - (1 if has_header else 0)))
            need = chunk_rows
        need -= count
        lines += count
        offset += len(block)
    items = [
        {
            "chunk": i,
            "start": start,
            "end": (starts[i + 1][0] if i + 1 < len(starts) else offset),
            "first_row": row,
        }
        for i, (start, row) in enumerate(starts)
    ]
    return header.decode("utf-8", errors="replace"), [i for i in items if i["end"] > i["start"]]


def _nth_line_end(block: bytes, position: int, n: int) -> int:
    for _ in range(n):
        position = block.index(b"\n", position) + 1
    return position


class _RangeFile(io.RawIOBase):
    """A seekable, read-only view of an S3 object by ranged GETs: pyarrow reads a Parquet footer and
    the row groups it is asked for, never the whole object."""

    def __init__(self, s3: S3Client, upload: Upload, size: int) -> None:
        self._s3, self._upload, self._size, self._pos = s3, upload, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        end = min(self._pos + len(buffer), self._size)
        if end <= self._pos:
            return 0
        u = self._upload
        data = self._s3.get_object(
            Bucket=u.bucket, Key=u.key, Range=f"bytes={self._pos}-{end - 1}", **_version(u)
        )
        chunk = data["Body"].read()
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def _parquet(s3: S3Client, upload: Upload, size: int) -> pq.ParquetFile:
    return pq.ParquetFile(io.BufferedReader(_RangeFile(s3, upload, size), buffer_size=1 << 20))


def _row_groups(s3: S3Client, upload: Upload, size: int) -> list[dict[str, Any]]:
    meta = _parquet(s3, upload, size).metadata
    items, first = [], 0
    for group in range(meta.num_row_groups):
        items.append({"chunk": group, "row_group": group, "first_row": first})
        first += meta.row_group(group).num_rows
    return items


# -- one chunk -------------------------------------------------------------------------------------------


def process_chunk(
    request: dict[str, Any],
    settings: Settings,
    *,
    s3: S3Client,
    curated_bucket: str,
    batch_rows: int = 100_000,
) -> dict[str, Any]:
    """Check one chunk into a curated part and a quarantine part; stage its findings for ``finish``."""
    upload, item = Upload(**request["upload"]), request["item"]
    contract = contract_for(upload, settings)
    chunk = int(item["chunk"])
    with tempfile.TemporaryDirectory(prefix="mlcycle-chunk-") as tmp:
        work = Path(tmp)
        source = _chunk_source(request, s3, work)
        try:
            fmt, gzipped = (
                ("parquet", False) if request["format"] == "parquet" else detect(source, upload.key)
            )
            if fmt == "csv":  # line-level faults quarantine their line alone, numbered as in the upload
                sinks = check_csv(
                    source,
                    gzipped,
                    contract,
                    _Sinks(work),
                    first_row=int(item["first_row"]),
                    now=_now(request),
                )
            else:
                frames = _frames(request, source, contract, s3, batch_rows)
                sinks = check_chunks(
                    frames, contract, _Sinks(work), first_row=int(item["first_row"]), now=_now(request)
                )
        except UNREADABLE as exc:
            summary = _unreadable_chunk(
                upload, chunk, source, s3=s3, bucket=curated_bucket, reason=f"{type(exc).__name__}: {exc}"
            )
        else:
            summary = _write_parts(
                upload, contract, chunk, sinks, date=request["ingest_date"], s3=s3, bucket=curated_bucket
            )
    key = staging_prefix(upload.upload_id) + f"chunks/{chunk:05d}.json"
    s3.put_object(Bucket=curated_bucket, Key=key, Body=json.dumps(summary, default=str).encode())
    return {"chunk": chunk, "curated_rows": summary["curated_rows"], "quarantined_rows": summary["bad_rows"]}


def _now(request: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(request["now"])


def _chunk_source(request: dict[str, Any], s3: S3Client, work: Path) -> Path:
    """The chunk's bytes on local disk: a range of a text upload (with the CSV header), or the gzip."""
    upload, item, fmt = Upload(**request["upload"]), request["item"], request["format"]
    target = work / "chunk"
    if fmt == "parquet":
        target.write_bytes(b"")  # row groups are read by range from S3
    elif fmt == "gzip":
        s3.download_file(upload.bucket, upload.key, str(target), ExtraArgs=_version(upload) or None)
    else:
        rng = f"bytes={item['start']}-{int(item['end']) - 1}"
        body = s3.get_object(Bucket=upload.bucket, Key=upload.key, Range=rng, **_version(upload))["Body"]
        with target.open("wb") as out:
            out.write(request.get("header", "").encode() if fmt == "csv" and item["start"] > 0 else b"")
            for block in body.iter_chunks(_BLOCK):
                out.write(block)
    return target


def _frames(
    request: dict[str, Any], source: Path, contract: DatasetContract, s3: S3Client, batch_rows: int
) -> Any:
    upload, item, fmt = Upload(**request["upload"]), request["item"], request["format"]
    columns = [c.name for c in contract.columns]
    if fmt == "parquet":
        from mlcycle.data.readers import _arrow_text

        table = _parquet(s3, upload, int(request["size"])).read_row_group(int(item["row_group"]))
        for batch in table.to_batches(max_chunksize=batch_rows):
            yield pd.DataFrame({n: _arrow_text(batch.column(i)) for i, n in enumerate(batch.schema.names)})
        return
    yield from read_chunks(source, batch_rows, name=upload.key, columns=columns)


def _write_parts(
    upload: Upload,
    contract: DatasetContract,
    chunk: int,
    sinks: _Sinks,
    *,
    date: str,
    s3: S3Client,
    bucket: str,
) -> dict[str, Any]:
    objects, content_hash = [], None
    if sinks.curated_rows:
        key = catalog.curated_key(contract.name, date, f"{upload.upload_id}-{chunk:05d}.parquet")
        objects.append(put_curated(s3, bucket, key, sinks.curated_path, sinks.curated_rows).__dict__)
        content_hash = file_hash(sinks.curated_path)
    if sinks.bad_rows:
        s3.upload_file(str(sinks.bad_path), bucket, quarantine_prefix(upload) + f"rows-{chunk:05d}.csv")
    return _summary(sinks.findings, objects, content_hash)


def _unreadable_chunk(
    upload: Upload, chunk: int, source: Path, *, s3: S3Client, bucket: str, reason: str
) -> dict[str, Any]:
    from mlcycle.data.readers import count_records

    s3.upload_file(str(source), bucket, quarantine_prefix(upload) + f"source-{chunk:05d}")
    findings = Findings(bad_rows=count_records(source, upload.key))
    findings.rule_counts[(f"chunk {chunk}", "parse")] = findings.bad_rows
    findings.violations.append(Violation(-1, f"chunk {chunk}", "parse", reason[:500]))
    return _summary(findings, [], None)


def _summary(findings: Findings, objects: list[dict[str, Any]], content_hash: str | None) -> dict[str, Any]:
    return {
        "curated_rows": findings.curated_rows,
        "bad_rows": findings.bad_rows,
        "rule_counts": [[c, r, n] for (c, r), n in findings.rule_counts.items()],
        "violations": [v.__dict__ for v in findings.violations],
        "objects": objects,
        "content_hash": content_hash,
    }


# -- finish ----------------------------------------------------------------------------------------------


def finish(
    request: dict[str, Any],
    settings: Settings,
    *,
    s3: S3Client,
    curated_bucket: str,
    recorders: Recorders | None = None,
) -> PrepareResult:
    """Merge the chunks' findings, enforce key uniqueness across chunks, and conclude as one upload."""
    upload = Upload(**request["upload"])
    contract = contract_for(upload, settings)
    findings, objects, hashes = Findings(), list[CuratedObject](), list[str]()
    for summary in _chunk_summaries(s3, curated_bucket, upload.upload_id):
        findings.merge(_findings(summary))
        objects.extend(CuratedObject(**o) for o in summary["objects"])
        hashes.append(summary["content_hash"] or "")
    if contract.key is not None and len(objects) > 1:
        _cross_chunk_duplicates(upload, contract, objects, findings, s3=s3, bucket=curated_bucket)
    outcome = Outcome(
        upload,
        contract,
        request["format"],
        findings,
        objects=objects,
        quarantine_uri=f"s3://{curated_bucket}/{quarantine_prefix(upload)}" if findings.bad_rows else None,
        content_hash=hashlib.sha256("".join(hashes).encode()).hexdigest() if objects else None,
        source_meta={"etag": request["etag"], "size": request["size"], "chunks": request["chunks"]},
    )
    recorders = recorders or Recorders()
    return conclude(outcome, s3=s3, bucket=curated_bucket, now=_now(request), recorders=recorders)


def _chunk_summaries(s3: S3Client, bucket: str, upload_id: str) -> list[dict[str, Any]]:
    paginator = s3.get_paginator("list_objects_v2")
    prefix = staging_prefix(upload_id) + "chunks/"
    keys = sorted(
        o["Key"] for p in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in p.get("Contents", [])
    )
    return [json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]


def _findings(summary: dict[str, Any]) -> Findings:
    found = Findings(curated_rows=summary["curated_rows"], bad_rows=summary["bad_rows"])
    found.rule_counts.update({(c, r): n for c, r, n in summary["rule_counts"]})
    found.violations = [Violation(**v) for v in summary["violations"]]
    return found


def _cross_chunk_duplicates(
    upload: Upload,
    contract: DatasetContract,
    objects: list[CuratedObject],
    findings: Findings,
    *,
    s3: S3Client,
    bucket: str,
) -> None:
    """A key curated by an earlier chunk makes the later rows duplicates: move them to quarantine.

    Each chunk checked uniqueness within itself. Parts are read one at a time in upload order and only
    their key column is decoded, so memory is one part plus the key index (8 bytes a key).
    """
    seen = KeyIndex()
    for position, obj in enumerate(objects):
        body = s3.get_object(Bucket=bucket, Key=obj.key)["Body"].read()
        keys = pd.read_parquet(io.BytesIO(body), columns=[str(contract.key)])[str(contract.key)]
        hashes = KeyIndex.hashes(keys)
        dup = seen.contains(hashes)
        seen.add(hashes[~dup])
        if dup.any():
            objects[position] = _move_duplicates(
                upload, str(contract.key), obj, body, dup, findings=findings, s3=s3, bucket=bucket
            )


def _move_duplicates(
    upload: Upload,
    key_column: str,
    obj: CuratedObject,
    body: bytes,
    dup: Any,
    *,
    findings: Findings,
    s3: S3Client,
    bucket: str,
) -> CuratedObject:
    frame = pd.read_parquet(io.BytesIO(body))
    moved, kept = frame[dup], frame[~dup]
    name = obj.key.rsplit("/", 1)[1].removesuffix(".parquet")
    s3.put_object(
        Bucket=bucket,
        Key=quarantine_prefix(upload) + f"duplicates-{name}.csv",
        Body=moved.to_csv(index=False).encode(),
    )
    findings.curated_rows -= len(moved)
    findings.bad_rows += len(moved)
    findings.add_violations([Violation(-1, key_column, "unique", str(k)) for k in moved[key_column]])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part.parquet"
        kept.to_parquet(path, index=False)
        return put_curated(s3, bucket, obj.key, path, len(kept))
