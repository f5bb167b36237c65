"""Prepare an upload: contract check, curated Parquet for good rows, quarantine for the rest.

Nothing is lost: for every upload, curated rows + quarantined rows = uploaded rows. A line of a CSV that
cannot be a row (ragged, an unterminated quote, bytes that are not UTF-8) goes to quarantine alone with
its line number and reason; a file that cannot be read at all (no header, a broken gzip or Parquet
footer, missing columns) goes whole to quarantine with the reason. Uploads (CSV, JSON lines, Parquet,
each also gzipped) are read in chunks so memory is bounded by the chunk size, not the file size; CSV
is read by Arrow and checked on Arrow columns (:mod:`mlcycle.data.csv_lines`,
:mod:`mlcycle.data.columnar`). Output keys
derive from the object's identity (key + version), so a redelivered S3 event rewrites the same objects
instead of adding rows (and the handler's idempotency makes it write nothing at all).

Each upload ends with a dataset manifest (:mod:`mlcycle.data.manifests`), its ``ingest_date``
partition registered in Glue, and lineage: upload -> prepare-data execution -> curated version.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from mlcycle import lineage as lin
from mlcycle.config import DatasetContract, Settings
from mlcycle.data import catalog, csv_lines
from mlcycle.data.columnar import finish, precheck
from mlcycle.data.contracts import PARSE_ERROR, ContractError, KeyIndex, Violation, check
from mlcycle.data.manifests import CuratedObject, DatasetManifest, schema_hash, write_manifest
from mlcycle.data.parquet_sink import ParquetSink
from mlcycle.data.readers import count_records, detect, read_chunks
from mlcycle.names import EventType

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client

UPLOAD_PREFIX = "uploads/"
MAX_REPORTED_VIOLATIONS = 1000
#: What an unreadable file raises while being read; anything else is a bug and fails the function.
UNREADABLE = (
    ContractError,
    ValueError,
    UnicodeDecodeError,
    EOFError,
    OSError,
    pd.errors.ParserError,
    pa.ArrowException,
)


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    version_id: str | None = None

    @property
    def upload_id(self) -> str:
        ident = f"{self.bucket}/{self.key}@{self.version_id or ''}"
        return hashlib.sha256(ident.encode()).hexdigest()[:16]

    @property
    def dataset(self) -> str:
        parts = self.key.split("/")
        if len(parts) < 3 or f"{parts[0]}/" != UPLOAD_PREFIX:
            raise ContractError(
                f"upload key must look like {UPLOAD_PREFIX}<dataset>/<file>, got {self.key!r}"
            )
        return parts[1]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" + (f"?versionId={self.version_id}" if self.version_id else "")


@dataclass
class PrepareResult:
    upload_id: str
    dataset: str
    source: str
    rows: int
    curated_rows: int
    quarantined_rows: int
    curated_uri: str | None
    quarantine_uri: str | None
    reason: str | None = None
    manifest_uri: str | None = None
    summary: str = ""

    @property
    def event_types(self) -> list[EventType]:
        """``DatasetValidated`` when rows were curated, ``DatasetQuarantined`` when any were not (or both)."""
        kinds = [EventType.DATASET_VALIDATED] if self.curated_rows else []
        return kinds + ([EventType.DATASET_QUARANTINED] if self.quarantined_rows or self.reason else [])

    def as_event(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Findings:
    """What checking an upload (or a chunk of it) found: counts and the first violations."""

    curated_rows: int = 0
    bad_rows: int = 0
    rule_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)

    def add_violations(self, violations: list[Violation]) -> None:
        self.rule_counts.update((v.column, v.rule) for v in violations)
        room = MAX_REPORTED_VIOLATIONS - len(self.violations)
        self.violations.extend(violations[: max(room, 0)])

    def merge(self, other: Findings) -> None:
        self.curated_rows += other.curated_rows
        self.bad_rows += other.bad_rows
        self.rule_counts.update(other.rule_counts)
        room = MAX_REPORTED_VIOLATIONS - len(self.violations)
        self.violations.extend(other.violations[: max(room, 0)])

    @property
    def summary(self) -> str:
        return "; ".join(
            f"{n} row{'s' if n != 1 else ''} broke {rule} on {column}"
            for (column, rule), n in sorted(self.rule_counts.items())
        )


@dataclass
class Outcome:
    """Where one upload's rows went; what the report, manifest, lineage and event are made from."""

    upload: Upload
    contract: DatasetContract
    format: str
    findings: Findings
    objects: list[CuratedObject] = field(default_factory=list)
    quarantine_uri: str | None = None
    content_hash: str | None = None
    reason: str | None = None
    source_meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recorders:
    """Where an upload is catalogued besides S3; each is optional (a unit test may want none)."""

    glue: GlueClient | None = None
    glue_database: str = ""
    lineage: lin.LineageStore | None = None

    @classmethod
    def connect(cls, *, glue_database: str | None, lineage_table: str | None) -> Recorders:
        """Glue and lineage with default clients, each when the function is configured with it."""
        from mlcycle import aws

        return cls(
            glue=aws.client("glue") if glue_database else None,
            glue_database=glue_database or "",
            lineage=lin.LineageStore(lineage_table, client=aws.client("dynamodb")) if lineage_table else None,
        )


class _Sinks:
    """Where good and bad rows of one upload accumulate, chunk by chunk, on local disk."""

    def __init__(self, work: Path, name: str = "", *, background: bool = False) -> None:
        self.curated_path = work / f"curated{name}.parquet"
        self.bad_path = work / f"rows{name}.csv"
        self._curated = ParquetSink(self.curated_path, background=background)
        self._bad_file = self.bad_path.open("w", newline="", encoding="utf-8")
        self._bad_writer: Any = None
        self.findings = Findings()

    @property
    def curated_rows(self) -> int:
        return self.findings.curated_rows

    @property
    def bad_rows(self) -> int:
        return self.findings.bad_rows

    @property
    def violations(self) -> list[Violation]:
        return self.findings.violations

    def add_good(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        self._curated.write(pa.Table.from_pandas(frame, preserve_index=False))
        self.findings.curated_rows += len(frame)

    def add_good_table(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._curated.write(table)
        self.findings.curated_rows += table.num_rows

    def add_bad(self, frame: pd.DataFrame, violations: list[Violation]) -> None:
        if self._bad_writer is None:
            self._bad_writer = csv.writer(self._bad_file)
            self._bad_writer.writerow(["_row", *frame.columns])
        for row, values in zip(frame.index, frame.itertuples(index=False), strict=True):
            self._bad_writer.writerow([row, *values])
        self.findings.bad_rows += len(frame)
        self.findings.add_violations(violations)

    def close(self) -> None:
        try:
            self._curated.close()
        finally:
            self._bad_file.close()


def check_chunks(
    chunks: Iterable[pd.DataFrame],
    contract: DatasetContract,
    sinks: _Sinks,
    *,
    first_row: int = 0,
    now: datetime | None = None,
) -> _Sinks:
    """Check chunks into ``sinks``; rows are numbered from ``first_row`` in the order read."""
    seen = KeyIndex()
    try:
        for chunk in chunks:
            result = check(chunk, contract, first_row=first_row, seen_keys=seen, now=now)
            sinks.add_good(result.good)
            if len(result.bad):
                sinks.add_bad(result.bad, result.violations)
            first_row += len(chunk)
    finally:
        sinks.close()
    return sinks


def check_csv(
    path: Path,
    gzipped: bool,
    contract: DatasetContract,
    sinks: _Sinks,
    *,
    first_row: int = 0,
    now: datetime | None = None,
    block_bytes: int = csv_lines.BLOCK_BYTES,
    use_threads: bool = True,
) -> _Sinks:
    """Check a CSV block by block into ``sinks``: lines that cannot be rows go to quarantine on their
    own (with line number and reason), the others through the contract."""
    seen = KeyIndex()
    try:
        names = csv_lines.header(path, gzipped)
        missing = [c.name for c in contract.columns if c.name not in names]
        if missing:
            raise ContractError(f"missing columns: {', '.join(missing)}")
        columns = [*names, "_line", PARSE_ERROR]
        blocks = csv_lines.blocks(
            path,
            gzipped,
            block_bytes=block_bytes,
            use_threads=use_threads,
            first_row=first_row,
            first_line=first_row + 2,
        )
        # The checks of one block that need no other block run ahead, on a thread of their own, while
        # this one claims the keys of the previous block (in file order) and hands it to the sinks.
        prechecked = ((block, precheck(block.table, contract, now=now)) for block in blocks)
        for block, checked in csv_lines.ahead(prechecked) if use_threads else prechecked:
            good, bad_mask, violations = finish(checked, block.rows, seen_keys=seen)
            sinks.add_good_table(good)
            bad = block.table.filter(pa.array(bad_mask)).to_pandas() if bad_mask.any() else pd.DataFrame()
            bad.index = block.rows[bad_mask]
            bad["_line"] = block.lines[bad_mask]
            line_of = dict(zip(block.rows[bad_mask].tolist(), block.lines[bad_mask].tolist(), strict=True))
            for v in violations:
                v.line = line_of[v.row]
            if block.bad:
                lines = pd.DataFrame(
                    {"_line": [b.line for b in block.bad], PARSE_ERROR: [b.text for b in block.bad]},
                    index=[b.row for b in block.bad],
                )
                bad = pd.concat([bad, lines]).sort_index()
                violations = sorted(
                    violations
                    + [Violation(b.row, PARSE_ERROR, b.rule, b.text, b.line, b.reason) for b in block.bad],
                    key=lambda v: (v.row, v.column),
                )
            if len(bad):
                sinks.add_bad(bad.reindex(columns=columns).fillna("").astype({"_line": "int64"}), violations)
    finally:
        sinks.close()
    return sinks


def prepare_file(
    path: Path,
    contract: DatasetContract,
    work: Path,
    chunk_rows: int = 100_000,
    *,
    name: str = "",
    now: datetime | None = None,
    block_bytes: int = csv_lines.BLOCK_BYTES,
    use_threads: bool = True,
) -> _Sinks:
    """Check a local file chunk by chunk into sinks under ``work``. Raises on an unreadable file.

    A CSV is read in blocks of ``block_bytes`` (line-level faults quarantine their line alone); JSON
    lines and Parquet in chunks of ``chunk_rows``."""
    fmt, gzipped = detect(path, name or path.name)
    if fmt == "csv":
        sinks = _Sinks(work, background=use_threads)
        return check_csv(
            path, gzipped, contract, sinks, now=now, block_bytes=block_bytes, use_threads=use_threads
        )
    columns = [c.name for c in contract.columns]
    chunks = read_chunks(path, chunk_rows, name=name or path.name, columns=columns)
    return check_chunks(chunks, contract, _Sinks(work), now=now)


def contracts(settings: Settings) -> dict[str, DatasetContract]:
    """The datasets this deployment accepts uploads of, by name."""
    return {settings.problem.dataset.name: settings.problem.dataset}


def contract_for(upload: Upload, settings: Settings) -> DatasetContract:
    known = contracts(settings)
    if upload.dataset not in known:
        raise ContractError(f"no contract for dataset {upload.dataset!r} (known: {', '.join(known)})")
    return known[upload.dataset]


def prepare_upload(
    upload: Upload,
    settings: Settings,
    *,
    s3: S3Client,
    curated_bucket: str,
    now: datetime | None = None,
    chunk_rows: int = 100_000,
    recorders: Recorders = Recorders(),
) -> PrepareResult:
    """Download, check and write one upload. Never raises for bad data: it quarantines instead."""
    now = now or datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="mlcycle-prepare-") as tmp:
        work = Path(tmp)
        source = work / "source"
        extra: dict[str, Any] = {"VersionId": upload.version_id} if upload.version_id else {}
        meta = s3.head_object(Bucket=upload.bucket, Key=upload.key, **extra)
        s3.download_file(upload.bucket, upload.key, str(source), ExtraArgs=extra or None)
        source_meta = {"etag": meta["ETag"].strip('"'), "size": meta["ContentLength"]}
        try:
            contract = contract_for(upload, settings)
            sinks = prepare_file(source, contract, work, chunk_rows, name=upload.key, now=now)
        except UNREADABLE as exc:
            reason = f"{type(exc).__name__}: {exc}"
            outcome = quarantine_whole(
                upload,
                source,
                s3=s3,
                bucket=curated_bucket,
                reason=reason,
                settings=settings,
                source_meta=source_meta,
            )
        else:
            fmt = _format_name(source, upload.key)
            outcome = _publish(
                upload, contract, fmt, sinks, s3=s3, bucket=curated_bucket, now=now, source_meta=source_meta
            )
        return conclude(outcome, s3=s3, bucket=curated_bucket, now=now, recorders=recorders)


def _format_name(source: Path, key: str) -> str:
    fmt, gzipped = detect(source, key)
    return f"{fmt}+gzip" if gzipped else fmt


def quarantine_prefix(upload: Upload) -> str:
    dataset = upload.key.split("/")[1] if upload.key.count("/") >= 2 else "_unknown"
    return f"quarantine/{dataset}/{upload.upload_id}/"


def quarantine_whole(
    upload: Upload,
    source: Path,
    *,
    s3: S3Client,
    bucket: str,
    reason: str,
    settings: Settings,
    source_meta: dict[str, Any],
) -> Outcome:
    """The whole file to quarantine, kept byte for byte, counted by its records as far as they read."""
    prefix = quarantine_prefix(upload)
    s3.upload_file(str(source), bucket, prefix + "source")
    findings = Findings(bad_rows=count_records(source, upload.key))
    dataset = prefix.split("/")[1]
    known = contracts(settings)
    contract = known.get(dataset) or DatasetContract(name="unknown", columns=())
    return Outcome(
        upload=upload,
        contract=contract,
        format="unreadable",
        findings=findings,
        quarantine_uri=f"s3://{bucket}/{prefix}",
        reason=reason,
        source_meta=source_meta,
    )


def _publish(
    upload: Upload,
    contract: DatasetContract,
    fmt: str,
    sinks: _Sinks,
    *,
    s3: S3Client,
    bucket: str,
    now: datetime,
    source_meta: dict[str, Any],
) -> Outcome:
    outcome = Outcome(upload, contract, fmt, sinks.findings, source_meta=source_meta)
    if sinks.curated_rows:
        key = catalog.curated_key(contract.name, f"{now:%Y-%m-%d}", f"{upload.upload_id}.parquet")
        outcome.objects.append(put_curated(s3, bucket, key, sinks.curated_path, sinks.curated_rows))
        outcome.content_hash = file_hash(sinks.curated_path)
    if sinks.bad_rows:
        prefix = quarantine_prefix(upload)
        s3.upload_file(str(sinks.bad_path), bucket, prefix + "rows.csv")
        outcome.quarantine_uri = f"s3://{bucket}/{prefix}"
    return outcome


def put_curated(s3: S3Client, bucket: str, key: str, path: Path, rows: int) -> CuratedObject:
    """Upload one curated Parquet object and name the S3 version it became."""
    s3.upload_file(str(path), bucket, key)
    head = s3.head_object(Bucket=bucket, Key=key)
    partition = key.rsplit("/", 2)[-2]
    return CuratedObject(key, head.get("VersionId"), head["ETag"].strip('"'), rows, partition)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def conclude(
    outcome: Outcome, *, s3: S3Client, bucket: str, now: datetime, recorders: Recorders = Recorders()
) -> PrepareResult:
    """After the rows are written: report, manifest, Glue partitions and lineage; the result."""
    upload, findings = outcome.upload, outcome.findings
    if outcome.quarantine_uri:
        report = _report(outcome)
        s3.put_object(Bucket=bucket, Key=quarantine_prefix(upload) + "report.json", Body=report.encode())
    manifest = _manifest(outcome, now)
    write_manifest(s3, bucket, manifest)
    if recorders.glue is not None and recorders.glue_database and outcome.objects:
        for date in sorted({o.partition.split("=", 1)[1] for o in outcome.objects}):
            catalog.register_partition(
                recorders.glue, recorders.glue_database, outcome.contract, bucket, date
            )
    if recorders.lineage is not None:
        _record_lineage(recorders.lineage, outcome, f"s3://{bucket}/{manifest.key}")
    return PrepareResult(
        upload_id=upload.upload_id,
        dataset=manifest.dataset,
        source=f"s3://{upload.bucket}/{upload.key}",
        rows=findings.curated_rows + findings.bad_rows,
        curated_rows=findings.curated_rows,
        quarantined_rows=findings.bad_rows,
        curated_uri=_curated_uri(outcome, bucket),
        quarantine_uri=outcome.quarantine_uri,
        reason=outcome.reason,
        manifest_uri=f"s3://{bucket}/{manifest.key}",
        summary=_summary(outcome),
    )


def _curated_uri(outcome: Outcome, bucket: str) -> str | None:
    """The one curated object, or the dataset's prefix when the upload was written in parts."""
    if len(outcome.objects) == 1:
        return f"s3://{bucket}/{outcome.objects[0].key}"
    return f"s3://{bucket}/{catalog.curated_prefix(outcome.contract.name)}" if outcome.objects else None


def _summary(outcome: Outcome) -> str:
    if outcome.reason:
        return f"the whole file: {outcome.reason}"
    return outcome.findings.summary or "all rows passed the contract"


def _manifest(outcome: Outcome, now: datetime) -> DatasetManifest:
    upload, findings = outcome.upload, outcome.findings
    dataset = quarantine_prefix(upload).split("/")[1]
    return DatasetManifest(
        upload_id=upload.upload_id,
        dataset=dataset,
        source={
            "bucket": upload.bucket,
            "key": upload.key,
            "version_id": upload.version_id,
            **outcome.source_meta,
        },
        format=outcome.format,
        rows=findings.curated_rows + findings.bad_rows,
        curated_rows=findings.curated_rows,
        quarantined_rows=findings.bad_rows,
        schema_hash=schema_hash(outcome.contract),
        content_hash=outcome.content_hash,
        created_at=now.isoformat(timespec="seconds"),
        objects=outcome.objects,
        partitions=sorted({o.partition for o in outcome.objects}),
        quarantine_uri=outcome.quarantine_uri,
        reason=outcome.reason,
        summary=_summary(outcome),
    )


def _record_lineage(store: lin.LineageStore, outcome: Outcome, manifest_uri: str) -> None:
    upload, findings = outcome.upload, outcome.findings
    uid = upload.upload_id
    source = lin.Artifact(
        lin.artifact_id(lin.UPLOAD, uid),
        lin.UPLOAD,
        upload.uri,
        {"format": outcome.format, **outcome.source_meta},
    )
    outputs = []
    if findings.curated_rows:
        props = {
            "rows": findings.curated_rows,
            "manifest": manifest_uri,
            "content_hash": outcome.content_hash,
        }
        outputs.append(
            lin.Artifact(lin.artifact_id(lin.CURATED_VERSION, uid), lin.CURATED_VERSION, manifest_uri, props)
        )
    if findings.bad_rows or outcome.reason:
        props = {"rows": findings.bad_rows, "reason": outcome.reason}
        outputs.append(
            lin.Artifact(
                lin.artifact_id(lin.QUARANTINE, uid), lin.QUARANTINE, outcome.quarantine_uri or "", props
            )
        )
    execution = lin.Execution(
        lin.artifact_id(lin.PREPARE_DATA, uid),
        lin.PREPARE_DATA,
        properties={"rows": findings.curated_rows + findings.bad_rows, "summary": _summary(outcome)},
    )
    store.record(execution, inputs=[source], outputs=outputs)


def _report(outcome: Outcome) -> str:
    findings = outcome.findings
    counts = [{"column": c, "rule": r, "rows": n} for (c, r), n in sorted(findings.rule_counts.items())]
    body: dict[str, Any] = {
        "upload": asdict(outcome.upload),
        "summary": _summary(outcome),
        "quarantined_rows": findings.bad_rows,
        "curated_rows": findings.curated_rows,
        "whole_file": outcome.reason is not None,
    }
    if outcome.reason is not None:
        body["reason"] = outcome.reason
    else:
        body |= {
            "violation_counts": counts,
            "violations": [asdict(v) for v in findings.violations],
            "violations_truncated": sum(findings.rule_counts.values()) > len(findings.violations),
        }
    return json.dumps(body, indent=2)
