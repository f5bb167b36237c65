"""Ground-truth labels: parsing (formats and errors), storing once, the latest label per inference id,
the join with captured rows, and ``mlcycle labels upload`` against moto's S3."""

from __future__ import annotations

import gzip
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcycle import cli
from mlcycle.application import connect
from mlcycle.application.platform import Platform
from mlcycle.config import ProblemConfig, Settings
from mlcycle.example import churn
from mlcycle.monitoring import labels, outcomes

BUCKET = "monitoring-bucket"


@pytest.fixture
def problem() -> ProblemConfig:
    return churn.default_problem()


@pytest.fixture
def regression() -> ProblemConfig:
    return churn.default_problem().model_copy(update={"task": "regression", "target": "monthly_charges"})


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket=BUCKET)
    return BUCKET


def _csv(text: str) -> bytes:
    return text.strip().encode() + b"\n"


# --- parse -------------------------------------------------------------------------------------------


def test_csv_with_the_target_as_label_column(problem: ProblemConfig) -> None:
    frame = labels.parse(_csv("inference_id,churned\na,1\nb,0\nc,1.0"), "truth.csv", problem)
    assert list(frame.columns) == ["inference_id", "label", "labelled_at"]
    assert frame["inference_id"].tolist() == ["a", "b", "c"]
    assert frame["label"].tolist() == [1, 0, 1] and frame["label"].dtype == "int64"
    assert frame["labelled_at"].isna().all()


def test_json_lines_gzipped_with_labelled_at_and_booleans(problem: ProblemConfig) -> None:
    lines = [
        {"inference_id": "a", "label": True, "labelled_at": "2026-02-01T10:00:00Z"},
        {"inference_id": "b", "label": False, "labelled_at": "2026-02-02"},
    ]
    data = gzip.compress("\n".join(json.dumps(line) for line in lines).encode() + b"\n\n")
    frame = labels.parse(data, "truth.jsonl.gz", problem)
    assert frame["label"].tolist() == [1, 0]
    assert frame["labelled_at"].tolist() == [
        pd.Timestamp("2026-02-01T10:00:00Z"),
        pd.Timestamp("2026-02-02T00:00:00Z"),
    ]


def test_model_monitor_ground_truth_records(problem: ProblemConfig) -> None:
    records = [
        {"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"inferenceId": "x"}},
        {"groundTruthData": {"data": "0", "encoding": "CSV"}, "eventMetadata": {"eventId": "e-2"}},
    ]
    data = "\n".join(json.dumps({**r, "eventVersion": "0"}) for r in records).encode()
    frame = labels.parse(data, "gt.jsonl", problem)
    assert frame[["inference_id", "label"]].to_dict("records") == [
        {"inference_id": "x", "label": 1},
        {"inference_id": "e-2", "label": 0},
    ]


def test_parquet_regression_labels(regression: ProblemConfig) -> None:
    buffer = io.BytesIO()
    pd.DataFrame({"inference_id": ["a", "b"], "label": [12.5, 80.0]}).to_parquet(buffer)
    frame = labels.parse(buffer.getvalue(), "truth.parquet", regression)
    assert frame["label"].tolist() == [12.5, 80.0] and frame["label"].dtype == "float64"


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("id,churned\na,1", "t.csv", "no 'inference_id' column"),
        ("inference_id,score\na,1", "t.csv", "no label column: name it 'label' or 'churned'"),
        ("inference_id,label,churned\na,1,1", "t.csv", "both 'label' and 'churned'"),
        ("inference_id,label\na,1\n,0", "t.csv", "line 3: column 'inference_id' is empty"),
        ("inference_id,label\na,1\nb,0\na,0", "t.csv", "line 4: column 'inference_id': 'a' is labelled"),
        ("inference_id,label\na,1\nb,2", "t.csv", "line 3: column 'label': '2' is not a class of 'churned'"),
        ("inference_id,label\na,yes\nb,maybe", "t.csv", "line 3: column 'label': 'maybe' is not a class"),
        ("inference_id,label\na,0.5", "t.csv", "line 2: column 'label': '0.5' is not a class"),
        ("inference_id,label\na,", "t.csv", "line 2: column 'label': empty is not a class"),
        ("inference_id,label,labelled_at\na,1,soon", "t.csv", "line 2: column 'labelled_at': 'soon'"),
        ('{"inference_id": "a", "label": 1}\n\n{"inference_id": "a", "label": 0}', "t.jsonl", "line 3"),
        ('{"inference_id": "a", "label": 1}\n[1]', "t.jsonl", "line 2: not a JSON object"),
        ("a,1", "t.txt", "unknown label file type"),
    ],
)
def test_parse_errors_name_the_line_and_column(
    problem: ProblemConfig, content: str, name: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")) as error:
        labels.parse(content.encode(), name, problem)
    assert str(error.value).startswith(f"{name}: ")


def test_regression_label_must_be_a_number(regression: ProblemConfig) -> None:
    with pytest.raises(ValueError, match=r"line 3: column 'label': 'n/a' is not a number"):
        labels.parse(_csv("inference_id,label\na,1.5\nb,n/a"), "t.csv", regression)


def test_parquet_errors_name_the_row(problem: ProblemConfig) -> None:
    buffer = io.BytesIO()
    pd.DataFrame({"inference_id": ["a", "b", "b"], "label": [1, 0, 1]}).to_parquet(buffer)
    with pytest.raises(ValueError, match="row 3: column 'inference_id': 'b' is labelled twice"):
        labels.parse(buffer.getvalue(), "t.parquet", problem)


def test_classes_and_positive_label(problem: ProblemConfig, regression: ProblemConfig) -> None:
    assert labels.classes(problem) == (0, 1) and labels.positive_label(problem) == 1
    assert labels.classes(regression) is None


# --- store and load ----------------------------------------------------------------------------------


def test_store_is_idempotent(s3: Any, bucket: str, problem: ProblemConfig) -> None:
    data = _csv("inference_id,label\na,1\nb,0")
    first = labels.store(s3, bucket, labels.parse(data, "t.csv", problem), source="crm")
    second = labels.store(s3, bucket, labels.parse(data, "again.csv", problem), source="crm")
    assert first == second and first.startswith(f"s3://{bucket}/labels/crm/")
    assert len(s3.list_objects_v2(Bucket=bucket, Prefix="labels/")["Contents"]) == 1
    loaded = labels.load(s3, bucket)
    assert loaded[["inference_id", "label"]].to_dict("records") == [
        {"inference_id": "a", "label": 1},
        {"inference_id": "b", "label": 0},
    ]
    assert loaded["labelled_at"].notna().all()


def test_store_refuses_a_source_that_is_not_a_path_segment(problem: ProblemConfig) -> None:
    frame = labels.parse(_csv("inference_id,label\na,1"), "t.csv", problem)
    with pytest.raises(ValueError, match=r"source '\.\./x'"):
        labels.key(frame, source="../x")


def test_latest_label_wins(s3: Any, bucket: str, problem: ProblemConfig) -> None:
    # Explicit times: a later labelled_at wins even when stored first.
    newer = _csv("inference_id,label,labelled_at\na,0,2026-03-02\nb,1,2026-03-02")
    older = _csv("inference_id,label,labelled_at\na,1,2026-03-01\nc,1,2026-03-01")
    labels.store(s3, bucket, labels.parse(newer, "n.csv", problem), source="a")
    labels.store(s3, bucket, labels.parse(older, "o.csv", problem), source="b")
    # Without times: the later upload wins.
    labels.store(s3, bucket, labels.parse(_csv("inference_id,label\nd,1"), "d1.csv", problem), source="a")
    time.sleep(0.01)
    labels.store(s3, bucket, labels.parse(_csv("inference_id,label\nd,0"), "d2.csv", problem), source="a")
    loaded = labels.load(s3, bucket)
    assert dict(zip(loaded["inference_id"], loaded["label"], strict=True)) == {"a": 0, "b": 1, "c": 1, "d": 0}


def test_load_reads_parquet_dropped_by_other_tools(s3: Any, bucket: str) -> None:
    buffer = io.BytesIO()
    pd.DataFrame({"inference_id": [7, 8], "label": [1, 0]}).to_parquet(buffer)
    s3.put_object(Bucket=bucket, Key="labels/etl/batch-1.parquet", Body=buffer.getvalue())
    s3.put_object(Bucket=bucket, Key="labels/README.txt", Body=b"not labels")
    loaded = labels.load(s3, bucket)
    assert loaded["inference_id"].tolist() == ["7", "8"] and loaded["labelled_at"].notna().all()


def test_load_of_an_empty_bucket(s3: Any, bucket: str) -> None:
    loaded = labels.load(s3, bucket)
    assert loaded.empty and list(loaded.columns) == ["inference_id", "label", "labelled_at"]


# --- join --------------------------------------------------------------------------------------------


def test_join_by_inference_id_with_coverage() -> None:
    window = pd.DataFrame(
        {
            "prediction": [1, 0, 1, 0],
            "probability": [0.9, 0.1, 0.8, 0.3],
            "inference_id": ["a", None, "7", "z"],
            "model_version": [1, 1, 1, 1],
        }
    )
    truth = pd.DataFrame({"inference_id": ["a", "7", "q"], "label": [1, 0, 1]})
    joined = outcomes.join(window, truth)
    assert joined.labelled == 2 and joined.coverage == 0.5 and joined.rows == 4
    np.testing.assert_array_equal(joined.frame["label"].to_numpy(), [1.0, np.nan, 0.0, np.nan])
    # An empty window has a defined coverage.
    assert outcomes.join(window.iloc[:0], truth).coverage == 0.0


def test_late_labels_update_a_joined_window() -> None:
    window = pd.DataFrame({"prediction": [1, 0], "inference_id": ["a", "b"]})
    early = outcomes.join(window, pd.DataFrame({"inference_id": ["a"], "label": [1]}))
    late = outcomes.join(early.frame, pd.DataFrame({"inference_id": ["a", "b"], "label": [1, 1]}))
    assert (early.labelled, late.labelled) == (1, 2) and late.frame["label"].tolist() == [1.0, 1.0]


# --- the CLI -----------------------------------------------------------------------------------------


def test_labels_upload_command(
    s3: Any,
    bucket: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    platform = Platform("landing", "curated", "artifacts", bucket, "machine", "bus")
    monkeypatch.setattr(connect, "connect", lambda _s: connect.Connection(platform, settings.region, None))
    path = tmp_path / "truth.csv"
    path.write_text("inference_id,churned\na,1\nb,0\nc,1\n")

    assert cli.main(["labels", "upload", str(path), "--source", "crm"]) == 0
    out = capsys.readouterr().out
    assert f"stored 3 labels from {path} (source 'crm') at s3://{bucket}/labels/crm/" in out
    assert "labels by class: 0: 1, 1: 2" in out
    assert cli.main(["labels", "upload", str(path), "--source", "crm"]) == 0
    assert "already stored 3 labels" in capsys.readouterr().out
    assert len(labels.load(s3, bucket)) == 3

    path.write_text("inference_id,churned\na,1\na,0\n")
    assert cli.main(["labels", "upload", str(path)]) == 1
    assert "line 3: column 'inference_id': 'a' is labelled twice" in capsys.readouterr().err


def test_labels_upload_help_explains_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["labels", "upload", "--help"])
    out = capsys.readouterr().out
    assert "inference_id" in out and "labelled_at" in out and "latest label wins" in out


def test_example_generate_writes_labels_keyed_by_customer_id(tmp_path: Path, problem: ProblemConfig) -> None:
    rows, truth = tmp_path / "rows.csv", tmp_path / "labels.csv"
    argv = ["example", "generate", "--rows", "50", "--seed", "3", "--out", str(rows), "--labels", str(truth)]
    assert cli.main(argv) == 0
    frame = labels.parse(truth.read_bytes(), truth.name, problem)
    generated = pd.read_csv(rows)
    assert frame["inference_id"].tolist() == generated["customer_id"].tolist()
    assert frame["label"].tolist() == generated["churned"].tolist()


def test_join_matches_ids_across_types_and_keeps_the_last_duplicate() -> None:
    window = pd.DataFrame(
        {"prediction": [1, 0, 1], "inference_id": pd.array(["7", None, "8"], dtype="string")}
    )
    truth = pd.DataFrame({"inference_id": [7, "7", 8], "label": [0, 1, 1]})
    joined = outcomes.join(window, truth)
    np.testing.assert_array_equal(joined.frame["label"].to_numpy(), [1.0, np.nan, 1.0])
    assert joined.labelled == 2
