"""``mlcycle labels upload FILE``: ground truth for the monitors, keyed by inference id.

The labels go to the platform's monitoring bucket (``labels/{source}/{digest}.parquet``), where the model
quality, bias and KPI monitors join them to the captured predictions with the same ``inference_id``. Late
labels count in the windows their predictions belong to.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlcycle.config import Settings

FORMAT_HELP = """\
FILE is CSV, JSON lines (.jsonl/.json) or Parquet, optionally gzipped (.gz), one row per prediction:
  inference_id   the InferenceId the prediction was requested with (unique within the file)
  label          the true label (the column may also be named after the problem's target);
                 a class for classification, a number for regression
  labelled_at    optional: when the label became known (ISO 8601; default: the upload time)
When an inference is labelled again in a later upload, the latest label wins. JSON lines may also hold
SageMaker Model Monitor ground-truth records ({"groundTruthData": {"data": ...}, "eventMetadata":
{"inferenceId": ...}}). Uploading the same file twice stores it once.
"""


def cmd_upload(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.application.connect import connect
    from mlcycle.monitoring import labels

    path = Path(args.file)
    # A bad file fails here, before any AWS call; the CLI prints the ValueError (line and column).
    frame = labels.parse(path.read_bytes(), path.name, settings.problem)
    key = labels.key(frame, source=args.source)
    connection = connect(settings)
    s3, bucket = connection.client("s3"), connection.platform.monitoring_bucket
    known = labels.exists(s3, bucket, key)
    uri = labels.store(s3, bucket, frame, source=args.source)
    verb = "already stored" if known else "stored"
    print(f"{verb} {len(frame)} labels from {path} (source {args.source!r}) at {uri}")
    print(f"{_summary(frame, settings)}; label coverage shows once the monitor joins them to captured rows")
    return 0


def _summary(frame: Any, settings: Settings) -> str:
    if settings.problem.task == "regression":
        return f"labels from {frame['label'].min():g} to {frame['label'].max():g}"
    counts = frame["label"].value_counts().sort_index()
    return "labels by class: " + ", ".join(f"{label}: {count}" for label, count in counts.items())


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("labels", help="ground truth for the model quality monitors")
    actions = parser.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    upload = actions.add_parser(
        "upload",
        help="store a file of labels keyed by inference id",
        description=FORMAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    upload.add_argument("file", metavar="FILE", help="labels: CSV, JSON lines or Parquet")
    upload.add_argument(
        "--source", default="cli", help="who labelled them (a path segment of the stored object; default cli)"
    )
    upload.set_defaults(func=cmd_upload)
