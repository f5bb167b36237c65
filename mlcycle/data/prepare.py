"""Prepare an upload: contract check, curated Parquet for good rows, quarantine for the rest.

Nothing is lost: for every upload, curated rows + quarantined rows = uploaded rows, and a file that
cannot be read at all goes whole to quarantine with the reason. Uploads are read in chunks so memory is
bounded by the chunk size, not the file size. Output keys derive from the object's identity (key +
version), so a redelivered S3 event rewrites the same objects instead of adding rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlcycle.config import DatasetContract, Settings
from mlcycle.data.contracts import ContractError, Violation, check
from mlcycle.events import DATASET_QUARANTINED, DATASET_VALIDATED

UPLOAD_PREFIX = "uploads/"
MAX_REPORTED_VIOLATIONS = 1000


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

    @property
    def event_types(self) -> list[str]:
        """``DatasetValidated`` when rows were curated, ``DatasetQuarantined`` when any were not (or both)."""
        kinds = [DATASET_VALIDATED] if self.curated_rows else []
        return kinds + ([DATASET_QUARANTINED] if self.quarantined_rows or self.reason else [])

    def as_event(self) -> dict[str, Any]:
        return asdict(self)


class _Sinks:
    """Where good and bad rows of one upload accumulate, chunk by chunk, on local disk."""

    def __init__(self, work: Path) -> None:
        self.curated_path = work / "curated.parquet"
        self.bad_path = work / "rows.csv"
        self._writer: pq.ParquetWriter | None = None
        self._bad_file = self.bad_path.open("w", newline="", encoding="utf-8")
        self._bad_writer: Any = None
        self.curated_rows = 0
        self.bad_rows = 0
        self.violations: list[Violation] = []
        self.rule_counts: Counter[tuple[str, str]] = Counter()

    def add_good(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.curated_path, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))
        self.curated_rows += len(frame)

    def add_bad(self, frame: pd.DataFrame, violations: list[Violation]) -> None:
        if self._bad_writer is None:
            self._bad_writer = csv.writer(self._bad_file)
            self._bad_writer.writerow(["_row", *frame.columns])
        for row, values in zip(frame.index, frame.itertuples(index=False), strict=True):
            self._bad_writer.writerow([row, *values])
        self.bad_rows += len(frame)
        self.rule_counts.update((v.column, v.rule) for v in violations)
        room = MAX_REPORTED_VIOLATIONS - len(self.violations)
        self.violations.extend(violations[: max(room, 0)])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._bad_file.close()


def read_chunks(path: Path, chunk_rows: int) -> Any:
    """CSV chunks with every value as text; compression inferred from the content, not the name."""
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return pd.read_csv(
        path,
        dtype=str,
        keep_default_na=False,
        chunksize=chunk_rows,
        compression="gzip" if gzipped else None,
        encoding="utf-8",
    )


def prepare_file(path: Path, contract: DatasetContract, work: Path, chunk_rows: int = 100_000) -> _Sinks:
    """Check a local file chunk by chunk into sinks under ``work``. Raises on an unreadable file."""
    sinks = _Sinks(work)
    seen: set[str] = set()
    first = 0
    try:
        for chunk in read_chunks(path, chunk_rows):
            result = check(chunk, contract, first_row=first, seen_keys=seen)
            sinks.add_good(result.good)
            if len(result.bad):
                sinks.add_bad(result.bad, result.violations)
            first += len(chunk)
    finally:
        sinks.close()
    return sinks


def prepare_upload(
    upload: Upload,
    settings: Settings,
    *,
    s3: Any,
    curated_bucket: str,
    now: datetime | None = None,
    chunk_rows: int = 100_000,
) -> PrepareResult:
    """Download, check and write one upload. Never raises for bad data: it quarantines instead."""
    now = now or datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="mlcycle-prepare-") as tmp:
        work = Path(tmp)
        source = work / "source"
        extra = {"VersionId": upload.version_id} if upload.version_id else {}
        s3.download_file(upload.bucket, upload.key, str(source), ExtraArgs=extra or None)
        try:
            contract = _contract_for(upload, settings)
            sinks = prepare_file(source, contract, work, chunk_rows)
        except (
            ContractError,
            ValueError,
            UnicodeDecodeError,
            EOFError,
            OSError,
            pd.errors.ParserError,
        ) as exc:
            return _quarantine_whole(upload, source, s3, curated_bucket, f"{type(exc).__name__}: {exc}")
        return _publish(upload, sinks, s3, curated_bucket, now)


def _contract_for(upload: Upload, settings: Settings) -> DatasetContract:
    contract = settings.problem.dataset
    if upload.dataset != contract.name:
        raise ContractError(f"no contract for dataset {upload.dataset!r} (known: {contract.name})")
    return contract


def _quarantine_prefix(upload: Upload) -> str:
    dataset = upload.key.split("/")[1] if upload.key.count("/") >= 2 else "_unknown"
    return f"quarantine/{dataset}/{upload.upload_id}/"


def _quarantine_whole(upload: Upload, source: Path, s3: Any, bucket: str, reason: str) -> PrepareResult:
    prefix = _quarantine_prefix(upload)
    s3.upload_file(str(source), bucket, prefix + "source")
    rows = _count_lines(source)
    report = {
        "upload": asdict(upload),
        "summary": f"the whole file: {reason}",
        "reason": reason,
        "quarantined_rows": rows,
        "curated_rows": 0,
        "whole_file": True,
    }
    s3.put_object(Bucket=bucket, Key=prefix + "report.json", Body=json.dumps(report, indent=2).encode())
    return PrepareResult(
        upload_id=upload.upload_id,
        dataset=prefix.split("/")[1],
        source=f"s3://{upload.bucket}/{upload.key}",
        rows=rows,
        curated_rows=0,
        quarantined_rows=rows,
        curated_uri=None,
        quarantine_uri=f"s3://{bucket}/{prefix}",
        reason=reason,
    )


def _count_lines(path: Path) -> int:
    """Data rows of an unreadable file, for the accounting: its lines less a header, at least 0."""
    try:
        with path.open("rb") as fh:
            return max(sum(1 for _ in fh) - 1, 0)
    except OSError:
        return 0


def _publish(upload: Upload, sinks: _Sinks, s3: Any, bucket: str, now: datetime) -> PrepareResult:
    dataset = upload.dataset
    curated_uri = quarantine_uri = None
    if sinks.curated_rows:
        key = f"curated/{dataset}/ingest_date={now:%Y-%m-%d}/{upload.upload_id}.parquet"
        s3.upload_file(str(sinks.curated_path), bucket, key)
        curated_uri = f"s3://{bucket}/{key}"
    if sinks.bad_rows:
        prefix = _quarantine_prefix(upload)
        s3.upload_file(str(sinks.bad_path), bucket, prefix + "rows.csv")
        s3.put_object(Bucket=bucket, Key=prefix + "report.json", Body=_report(upload, sinks).encode())
        quarantine_uri = f"s3://{bucket}/{prefix}"
    return PrepareResult(
        upload_id=upload.upload_id,
        dataset=dataset,
        source=f"s3://{upload.bucket}/{upload.key}",
        rows=sinks.curated_rows + sinks.bad_rows,
        curated_rows=sinks.curated_rows,
        quarantined_rows=sinks.bad_rows,
        curated_uri=curated_uri,
        quarantine_uri=quarantine_uri,
    )


def _report(upload: Upload, sinks: _Sinks) -> str:
    counts = [{"column": c, "rule": r, "rows": n} for (c, r), n in sorted(sinks.rule_counts.items())]
    summary = "; ".join(
        f"{c['rows']} row{'s' if c['rows'] != 1 else ''} broke {c['rule']} on {c['column']}" for c in counts
    )
    return json.dumps(
        {
            "upload": asdict(upload),
            "summary": summary,
            "quarantined_rows": sinks.bad_rows,
            "curated_rows": sinks.curated_rows,
            "violation_counts": counts,
            "violations": [asdict(v) for v in sinks.violations],
            "violations_truncated": sum(sinks.rule_counts.values()) > len(sinks.violations),
            "whole_file": False,
        },
        indent=2,
    )
