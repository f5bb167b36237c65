"""SageMaker batch transform on the embedded AWS: a real model server over every object of an S3 prefix,
split by line, multi-record batches, assembled by line, joined to the input; bad records fail the job
naming the object and the line; Describe, List and Stop as in AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from botocore.exceptions import ClientError

from mlcycle import cli
from mlcycle.application import connect
from mlcycle.application.platform import Platform
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.local.sagemaker import transform
from mlcycle.local.server import EmbeddedAws
from pipelines import inference
from tests.functional.local.conftest_sagemaker import ROLE, Client, tar_gz, unique
from tests.models import example_model_dir

TERMINAL = ("Completed", "Failed", "Stopped")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0"


@dataclass(frozen=True)
class TransformWorld:
    """The example churn model behind a SageMaker model, a bucket, and the model in this process."""

    bucket: str
    model_name: str
    model_data: str
    features: list[str]
    model: inference.Model

    def rows(self, count: int, seed: int) -> list[str]:
        """``count`` CSV rows of the model's features, in its order, without a header."""
        frame = churn.generate(count, seed=seed)[self.features]
        return frame.to_csv(header=False, index=False, lineterminator="\n").splitlines()

    def expected(self, lines: list[str], accept: str = "text/csv") -> list[str]:
        """What the model answers for these rows, one line each, computed here in one request."""
        body, _ = inference.transform_fn(self.model, "\n".join(lines), "text/csv", accept)
        return body.decode().splitlines()

    def request(self, name: str, input_uri: str, **overrides: Any) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TransformJobName": name,
            "ModelName": self.model_name,
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 1,
            "MaxConcurrentTransforms": 2,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            "TransformOutput": {
                "S3OutputPath": f"s3://{self.bucket}/outputs/{name}",
                "Accept": "text/csv",
                "AssembleWith": "Line",
            },
            "DataProcessing": {"JoinSource": "Input"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        }
        request.update(overrides)
        return request


@pytest.fixture(scope="module")
def world(aws_client: Client, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> TransformWorld:
    """One small example model (trained once, here), as the training job packages it."""
    directory = example_model_dir(tmp_path_factory.mktemp("model"), settings)
    s3 = aws_client("s3")
    bucket = unique("transform-tests")
    s3.create_bucket(Bucket=bucket)
    files = {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    s3.put_object(Bucket=bucket, Key="model/model.tar.gz", Body=tar_gz(files))
    model_data = f"s3://{bucket}/model/model.tar.gz"
    name = unique("model")
    aws_client("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": model_data,
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            },
        },
    )
    schema = json.loads((directory / "schema.json").read_text())
    return TransformWorld(
        bucket, name, model_data, list(schema["features"]), inference.model_fn(str(directory))
    )


def put(aws_client: Client, bucket: str, key: str, body: str | bytes) -> None:
    aws_client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def read(aws_client: Client, bucket: str, key: str) -> str:
    return str(aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def keys(aws_client: Client, bucket: str, prefix: str) -> list[str]:
    listed = aws_client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(entry["Key"] for entry in listed)


def run_job(
    aws_client: Client, wait_for: Any, request: dict[str, Any], timeout: float = 90.0
) -> dict[str, Any]:
    sagemaker = aws_client("sagemaker")
    sagemaker.create_transform_job(**request)
    name = request["TransformJobName"]

    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = sagemaker.describe_transform_job(TransformJobName=name)
        return job if job["TransformJobStatus"] in TERMINAL else None

    result: dict[str, Any] = wait_for(done, timeout=timeout, what=f"transform job {name}")
    return result


@pytest.fixture(scope="module")
def prefix_job(
    aws_client: Client, world: TransformWorld, wait_for: Any
) -> Iterator[tuple[dict[str, Any], dict[str, list[str]]]]:
    """One job over a prefix of three objects: one large enough for several 1 MB batches (a blank line and
    a CRLF line in it), one small, one in a subfolder."""
    name = unique("batch")
    inputs = {
        "part-1.csv": world.rows(24_000, seed=11),
        "part-2.csv": world.rows(37, seed=12),
        "more/part-3.csv": world.rows(5, seed=13),
    }
    for relative, lines in inputs.items():
        text = "\n".join(lines) + "\n"
        if relative == "part-1.csv":
            text = text.replace(f"{lines[3]}\n", f"{lines[3]}\n\n", 1).replace(
                f"{lines[7]}\n", f"{lines[7]}\r\n", 1
            )
        put(aws_client, world.bucket, f"inputs/{name}/{relative}", text)
    sagemaker = aws_client("sagemaker")
    sagemaker.create_transform_job(**world.request(name, f"s3://{world.bucket}/inputs/{name}/"))
    at_creation = sagemaker.describe_transform_job(TransformJobName=name)

    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = sagemaker.describe_transform_job(TransformJobName=name)
        return job if job["TransformJobStatus"] in TERMINAL else None

    final = wait_for(done, timeout=120, what=f"transform job {name}")
    yield {"at_creation": at_creation, "final": final}, inputs


def test_a_prefix_of_objects_is_transformed_line_by_line_joined_to_its_input(
    prefix_job: tuple[dict[str, Any], dict[str, list[str]]], world: TransformWorld, aws_client: Client
) -> None:
    described, inputs = prefix_job
    final = described["final"]
    # THEN the job was InProgress at creation and completed
    assert described["at_creation"]["TransformJobStatus"] == "InProgress"
    assert final["TransformJobStatus"] == "Completed", final.get("FailureReason")
    assert "FailureReason" not in final and "Tags" not in final
    assert final["TransformEndTime"] >= final["TransformStartTime"]
    # AND every object has its .out under the output path, keeping its path below the prefix
    name = final["TransformJobName"]
    assert keys(aws_client, world.bucket, f"outputs/{name}/") == [
        f"outputs/{name}/more/part-3.csv.out",
        f"outputs/{name}/part-1.csv.out",
        f"outputs/{name}/part-2.csv.out",
    ]
    for relative, lines in inputs.items():
        produced = read(aws_client, world.bucket, f"outputs/{name}/{relative}.out").splitlines()
        # AND rows in = rows out, in input order, each the input row joined to the model's own answer
        expected = [f"{row},{answer}" for row, answer in zip(lines, world.expected(lines), strict=True)]
        assert len(produced) == len(lines)
        assert produced == expected, relative


def test_a_bad_record_fails_the_job_naming_the_object_and_the_line(
    aws_client: Client, world: TransformWorld, wait_for: Any
) -> None:
    # GIVEN a good object and one whose 17th line holds a word where a number belongs
    name = unique("bad")
    good, bad = world.rows(30, seed=21), world.rows(30, seed=22)
    cells = bad[16].split(",")
    cells[world.features.index("tenure_months")] = "abc"
    bad[16] = ",".join(cells)
    put(aws_client, world.bucket, f"inputs/{name}/a-good.csv", "\n".join(good))
    put(aws_client, world.bucket, f"inputs/{name}/b-bad.csv", "\n".join(bad))
    # WHEN they are transformed
    final = run_job(aws_client, wait_for, world.request(name, f"s3://{world.bucket}/inputs/{name}/"))
    # THEN the job failed, its reason naming the object, the line and the model's reason
    assert final["TransformJobStatus"] == "Failed"
    reason = final["FailureReason"]
    assert reason.startswith(f"ClientError: s3://{world.bucket}/inputs/{name}/b-bad.csv line 17: ")
    assert "400" in reason and "'abc' is not a number" in reason
    # AND only the good object's output was uploaded (SageMaker uploads no partial object)
    assert keys(aws_client, world.bucket, f"outputs/{name}/") == [f"outputs/{name}/a-good.csv.out"]


def test_json_lines_records_keep_their_fields_beside_the_output(
    aws_client: Client, world: TransformWorld, wait_for: Any
) -> None:
    # GIVEN JSON lines records carrying an id the model does not read
    name = unique("jsonl")
    frame = churn.generate(40, seed=31)
    records = [
        {"customer_id": f"c{i}", **{f: _plain(row[f]) for f in world.features}}
        for i, row in enumerate(frame.to_dict("records"))
    ]
    put(aws_client, world.bucket, f"inputs/{name}/rows.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    request = world.request(name, f"s3://{world.bucket}/inputs/{name}/rows.jsonl")
    request["TransformInput"]["ContentType"] = "application/jsonlines"
    request["TransformOutput"]["Accept"] = "application/jsonlines"
    # WHEN they are transformed one record at a time and joined
    request["BatchStrategy"] = "SingleRecord"
    final = run_job(aws_client, wait_for, request)
    # THEN each output line is the input record plus SageMakerOutput, in order
    assert final["TransformJobStatus"] == "Completed", final.get("FailureReason")
    produced = [
        json.loads(line)
        for line in read(aws_client, world.bucket, f"outputs/{name}/rows.jsonl.out").splitlines()
    ]
    assert [p["customer_id"] for p in produced] == [r["customer_id"] for r in records]
    body, _ = inference.transform_fn(
        world.model, json.dumps(records), "application/json", "application/jsonlines"
    )
    assert [p["SageMakerOutput"] for p in produced] == [
        json.loads(line) for line in body.decode().splitlines()
    ]


def _plain(value: Any) -> Any:
    return None if pd.isna(value) else value.item() if hasattr(value, "item") else value


def test_describe_list_and_stop_behave_as_in_aws(
    aws_client: Client, world: TransformWorld, wait_for: Any
) -> None:
    sagemaker = aws_client("sagemaker")
    name = unique("stop")
    put(aws_client, world.bucket, f"inputs/{name}/rows.csv", "\n".join(world.rows(10, seed=41)))
    request = world.request(name, f"s3://{world.bucket}/inputs/{name}/")
    # GIVEN a job stopped while its model server starts
    sagemaker.create_transform_job(**request)
    sagemaker.stop_transform_job(TransformJobName=name)
    assert sagemaker.describe_transform_job(TransformJobName=name)["TransformJobStatus"] in (
        "Stopping",
        "Stopped",
    )

    def stopped() -> bool:
        return bool(
            sagemaker.describe_transform_job(TransformJobName=name)["TransformJobStatus"] == "Stopped"
        )

    wait_for(stopped, timeout=60, what="the stopped job")
    # THEN no output was written, and stopping it again, a second job of the same name, a job of a model that
    # does not exist, or stopping a job that does not exist are refused as AWS refuses them
    assert keys(aws_client, world.bucket, f"outputs/{name}/") == []
    for call, kwargs in (
        (sagemaker.stop_transform_job, {"TransformJobName": name}),
        (sagemaker.create_transform_job, request),
        (sagemaker.create_transform_job, {**request, "TransformJobName": unique("x"), "ModelName": "nope"}),
        (sagemaker.stop_transform_job, {"TransformJobName": unique("missing")}),
    ):
        with pytest.raises(ClientError) as raised:
            call(**kwargs)
        assert raised.value.response["Error"]["Code"] == "ValidationException"
    # AND the list is newest first (AWS's default order), filtered before it is paged
    listed = sagemaker.list_transform_jobs(StatusEquals="Stopped", MaxResults=1)["TransformJobSummaries"]
    assert [job["TransformJobName"] for job in listed] == [name]
    assert transform.job_directory(name).name == name


def test_missing_input_fails_with_aws_reason(
    aws_client: Client, world: TransformWorld, wait_for: Any
) -> None:
    name = unique("empty")
    final = run_job(aws_client, wait_for, world.request(name, f"s3://{world.bucket}/inputs/{name}/"))
    assert final["TransformJobStatus"] == "Failed"
    assert final["FailureReason"].startswith("ClientError: No S3 objects found under S3 URL")


def test_what_runs_only_in_aws_fails_the_job_saying_so(
    aws_client: Client, world: TransformWorld, wait_for: Any
) -> None:
    name = unique("filters")
    put(aws_client, world.bucket, f"inputs/{name}/rows.csv", "\n".join(world.rows(3, seed=71)))
    request = world.request(name, f"s3://{world.bucket}/inputs/{name}/")
    request["DataProcessing"] = {"InputFilter": "$[1:]", "JoinSource": "Input"}
    final = run_job(aws_client, wait_for, request)
    assert final["FailureReason"] == "ClientError: InputFilter (JSONPath) is not supported locally"
    request = world.request(unique("recordio"), f"s3://{world.bucket}/inputs/{name}/")
    request["TransformInput"]["SplitType"] = "RecordIO"
    final = run_job(aws_client, wait_for, request)
    assert "SplitType RecordIO is not supported locally" in final["FailureReason"]


def test_state_changes_arrive_on_the_default_bus(
    aws_client: Client, world: TransformWorld, wait_for: Any
) -> None:
    sqs, events = aws_client("sqs"), aws_client("events")
    url = sqs.create_queue(QueueName=unique("transforms"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = unique("events")
    pattern = {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Transform Job State Change"],
        "detail": {"TransformJobName": [name]},
    }
    rule = unique("transforms")
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    put(aws_client, world.bucket, f"inputs/{name}/rows.csv", "\n".join(world.rows(3, seed=51)))
    run_job(aws_client, wait_for, world.request(name, f"s3://{world.bucket}/inputs/{name}/"))
    received: list[dict[str, Any]] = []

    def two() -> bool:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received.append(json.loads(message["Body"]))
        return len(received) >= 2

    wait_for(two, timeout=10, what="two transform job events")
    assert [e["detail"]["TransformJobStatus"] for e in received] == ["InProgress", "Completed"]
    assert isinstance(received[1]["detail"]["TransformEndTime"], int)


# ---- mlcycle predict -----------------------------------------------------------------------------------


@pytest.fixture
def cli_platform(
    aws_client: Client,
    world: TransformWorld,
    embedded_aws: EmbeddedAws,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """Settings of a platform of its own whose registry holds one approved version of the world's model."""
    mine = settings.model_copy(update={"project": "cli", "stage": unique("p").replace("-", "")[:10]})
    monkeypatch.setattr("mlcycle.application.settings.resolve_settings", lambda _path=None: mine)
    unused = dict.fromkeys(("landing", "curated", "monitoring"), "unused")
    platform = Platform(
        landing_bucket=unused["landing"],
        curated_bucket=unused["curated"],
        artifacts_bucket=world.bucket,
        monitoring_bucket=unused["monitoring"],
        training_state_machine="unused",
        event_bus="unused",
        sagemaker_role=ROLE,
    )
    monkeypatch.setattr(
        connect, "connect", lambda _s: connect.Connection(platform, mine.region, embedded_aws.endpoint_url)
    )
    sagemaker = aws_client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=mine.model_package_group)
    container = {
        "Image": IMAGE,
        "ModelDataUrl": world.model_data,
        "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        },
    }
    sagemaker.create_model_package(
        ModelPackageGroupName=mine.model_package_group,
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [container],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )
    return mine


def test_predict_a_local_file_into_a_local_file(
    cli_platform: Settings, world: TransformWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a local CSV of rows to score
    rows = world.rows(300, seed=61)
    source = tmp_path / "customers.csv"
    source.write_text("\n".join(rows) + "\n")
    out = tmp_path / "scored.csv"
    argv = ["predict", str(source), "--out", str(out), "--join-input", "--poll-seconds", "0.2"]
    # WHEN it is predicted with the champion
    code = cli.main(argv)
    printed = capsys.readouterr()
    # THEN the output file holds each row joined to the model's answer, in order, and progress was shown
    assert code == 0, printed.err
    assert out.read_text().splitlines() == [
        f"{r},{a}" for r, a in zip(rows, world.expected(rows), strict=True)
    ]
    assert "started transform job cli-" in printed.out and "model version 1" in printed.out
    assert "Completed" in printed.out and f"wrote {out} (300 lines)" in printed.out
    # AND the same command again finds that job instead of starting another
    out.unlink()
    assert cli.main(argv) == 0
    printed = capsys.readouterr()
    assert "found (Completed) transform job" in printed.out and len(out.read_text().splitlines()) == 300


def test_predict_explains_what_is_wrong(
    cli_platform: Settings,
    world: TransformWorld,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    aws_client: Client,
) -> None:
    # a missing input
    assert cli.main(["predict", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.csv")]) == 1
    assert "no such file or directory" in capsys.readouterr().err
    # an empty S3 prefix, a bucket that does not exist
    assert (
        cli.main(["predict", f"s3://{world.bucket}/{unique('none')}/", "--out", str(tmp_path / "o.csv")]) == 1
    )
    assert "no objects under s3://" in capsys.readouterr().err
    assert cli.main(["predict", f"s3://{unique('none')}-bucket/x/", "--out", str(tmp_path / "o.csv")]) == 1
    assert "no bucket" in capsys.readouterr().err
    # a bad record, named by the user's file and line
    bad = tmp_path / "bad.csv"
    rows = world.rows(5, seed=81)
    rows[3] = "x" + rows[3]
    bad.write_text("\n".join(rows))
    assert cli.main(["predict", str(bad), "--out", str(tmp_path / "o.csv"), "--poll-seconds", "0.2"]) == 1
    assert f"failed: ClientError: {bad} line 4: the model answered 400" in capsys.readouterr().err
    # no approved model
    sagemaker = aws_client("sagemaker")
    [package] = sagemaker.list_model_packages(ModelPackageGroupName=cli_platform.model_package_group)[
        "ModelPackageSummaryList"
    ]
    sagemaker.update_model_package(ModelPackageArn=package["ModelPackageArn"], ModelApprovalStatus="Rejected")
    source = tmp_path / "rows.csv"
    source.write_text("1,2\n")
    assert cli.main(["predict", str(source), "--out", str(tmp_path / "o.csv")]) == 1
    assert "no approved model" in capsys.readouterr().err


def test_predict_help_explains_input_and_output(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    text = capsys.readouterr().out
    assert "s3://" in text and "--join-input" in text and "--no-wait" in text
