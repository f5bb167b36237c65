"""Errors on paths that carry data or state surface: they raise clearly, or land where a person looks."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mlcycle import batch, shadow
from mlcycle.application import cycle
from mlcycle.aws import lost_race
from mlcycle.commands import predict
from mlcycle.commands import retraining as retraining_command
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.monitoring import windows
from mlcycle.training_sets import ManifestUnreadableError, build_training_set
from tests.utils import REGION, make_bucket, make_key_table


class Failing:
    """A boto3 client whose named operations answer ``code``; everything else reaches the real client."""

    def __init__(self, client: Any, code: str, *operations: str) -> None:
        self._client, self._code, self._operations = client, code, operations

    def __getattr__(self, name: str) -> Any:
        if name in self._operations:

            def fail(**_: Any) -> Any:
                raise ClientError({"Error": {"Code": self._code, "Message": self._code}}, name)

            return fail
        return getattr(self._client, name)


def _curated(s3: Any) -> None:
    make_bucket(s3, "curated")
    make_bucket(s3, "artifacts")
    buffer = io.BytesIO()
    churn.generate(300, seed=3).to_parquet(buffer, index=False)
    s3.put_object(
        Bucket="curated", Key="curated/churn/ingest_date=2026-02-01/u1.parquet", Body=buffer.getvalue()
    )


def _build(s3: Any, settings: Settings) -> Any:
    return build_training_set(
        settings.problem,
        s3=s3,
        curated_bucket="curated",
        artifacts_bucket="artifacts",
        training_set_id="run-1",
        min_rows=50,
    )


def test_a_denied_manifest_lookup_fails_the_build_instead_of_recording_no_manifest(
    s3: Any, settings: Settings
) -> None:
    # GIVEN curated data whose upload manifest the build may not read
    _curated(s3)
    denied = Failing(s3, "403", "head_object")
    # WHEN the training set is built
    # THEN it fails naming the manifest and the denial, and writes no manifest claiming none exists
    with pytest.raises(ManifestUnreadableError, match=r"s3://curated/.*u1.*403"):
        _build(denied, settings)
    assert "Contents" not in s3.list_objects_v2(Bucket="artifacts", Prefix="training-sets/run-1/manifest")


def test_a_manifest_that_does_not_exist_is_recorded_as_absent(s3: Any, settings: Settings) -> None:
    # GIVEN curated data written before upload manifests existed
    _curated(s3)
    # WHEN the training set is built
    _build(s3, settings)
    # THEN the manifest says the data version has no upload manifest
    manifest = json.loads(
        s3.get_object(Bucket="artifacts", Key="training-sets/run-1/manifest.json")["Body"].read()
    )
    assert [v["manifest"] for v in manifest["dataset_versions"]] == [None]


class DeniedListing:
    """An S3 client that may not list the job's output bucket (the job's role wrote there, not ours)."""

    def get_paginator(self, operation: str) -> Any:
        def paginate(**_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "ListObjectsV2")

        return SimpleNamespace(paginate=paginate)


def test_answers_that_cannot_be_listed_are_an_error_not_an_empty_download(tmp_path: Path) -> None:
    # GIVEN a completed batch job whose output the caller may not list
    # WHEN its answers are fetched
    # THEN the command fails saying why, instead of writing nothing and succeeding
    with pytest.raises(batch.OutputsUnreadableError, match=r"s3://b/out/ \(AccessDenied\)"):
        predict._download(DeniedListing(), "s3://b/out/", tmp_path / "answers.csv")


def test_progress_while_the_output_cannot_be_listed_counts_nothing_yet() -> None:
    # GIVEN a running job whose output the caller may not list
    sagemaker = SimpleNamespace(describe_transform_job=lambda **_: {"TransformJobStatus": "Completed"})
    seen: list[batch.Progress] = []
    # WHEN it is waited for, THEN progress shows no object done (the download is what fails)
    batch.wait(
        sagemaker,  # type: ignore[arg-type]
        "job",
        s3=DeniedListing(),  # type: ignore[arg-type]
        output_uri="s3://b/out/",
        total=2,
        on_progress=seen.append,
    )
    assert [(p.status, p.done) for p in seen] == [("Completed", 0)]


def test_a_completed_job_without_answers_is_an_error(s3: Any, tmp_path: Path) -> None:
    # GIVEN a job whose output prefix holds no .out object
    make_bucket(s3, "answers")
    # WHEN its answers are fetched, THEN the command fails instead of writing nothing
    with pytest.raises(LookupError, match=r"wrote no \.out object under s3://answers/out/"):
        predict._download(s3, "s3://answers/out/", tmp_path / "answers.csv")


def _cancelled(client: Any, *codes: str) -> Exception:
    reasons = [{"Code": code} for code in codes]
    response = {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}}
    return client.exceptions.TransactionCanceledException(
        response | {"CancellationReasons": reasons}, "TransactWriteItems"
    )


class Cancelling:
    """A DynamoDB client whose transactions are cancelled for ``codes``."""

    def __init__(self, client: Any, *codes: str) -> None:
        self._client, self._codes = client, codes

    def transact_write_items(self, **_: Any) -> None:
        raise _cancelled(self._client, *self._codes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_only_a_cancellation_by_another_writer_is_a_lost_race(moto_aws: None) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    assert lost_race(_cancelled(client, "ConditionalCheckFailed", "None"))  # type: ignore[arg-type]
    assert lost_race(_cancelled(client, "None", "TransactionConflict"))  # type: ignore[arg-type]
    assert not lost_race(_cancelled(client, "ThrottlingError", "None"))  # type: ignore[arg-type]
    assert not lost_race(_cancelled(client, "ConditionalCheckFailed", "ValidationError"))  # type: ignore[arg-type]
    assert not lost_race(_cancelled(client))  # type: ignore[arg-type]


def test_a_throttled_window_commit_raises_instead_of_claiming_another_run_won(moto_aws: None) -> None:
    # GIVEN the monitor's table throttles the window's transaction
    client = boto3.client("dynamodb", region_name=REGION)
    make_key_table(client, "monitor-state")
    state = windows.MonitorState("monitor-state", Cancelling(client, "ThrottlingError"))  # type: ignore[arg-type]
    commit = {"checkpoint": windows.Checkpoint(), "advanced": windows.Checkpoint(), "findings": []}
    # WHEN the window commits, THEN the throttling surfaces (the Lambda fails and is retried)
    with pytest.raises(client.exceptions.TransactionCanceledException, match="cancelled"):
        state.commit("churn", "w1", {}, **commit)
    # AND a condition that no longer holds is the race it always was: another run committed first
    raced = windows.MonitorState("monitor-state", Cancelling(client, "ConditionalCheckFailed"))  # type: ignore[arg-type]
    assert raced.commit("churn", "w1", {}, **commit) is False


def test_waiting_for_the_endpoint_stops_at_a_denied_call_and_waits_only_for_one_not_there_yet(
    moto_aws: None, settings: Settings
) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    say: list[str] = []
    # GIVEN a caller that may not describe endpoints, WHEN the demo waits for its endpoint
    # THEN the denial surfaces at once, not as a timeout three minutes later
    denied = cycle.Clients(
        None, None, Failing(sagemaker, "AccessDeniedException", "describe_endpoint"), None, None
    )
    with pytest.raises(ClientError, match="AccessDeniedException"):
        cycle.wait_for_endpoint(denied, settings, say.append, timeout=60)
    # AND an endpoint that does not exist yet is waited for (and named when it never comes)
    absent = cycle.Clients(None, None, sagemaker, None, None)
    with pytest.raises(cycle.CycleError, match=r"timed out .* InService"):
        cycle.wait_for_endpoint(absent, settings, say.append, timeout=0.3)


def test_retraining_status_shows_what_a_decision_noted() -> None:
    # GIVEN a run started without its recent labelled window (the export failed; the decision noted it)
    decision = {
        "decided_at": "2031-03-04T10:00:00Z",
        "action": "started",
        "event_type": "DriftDetected",
        "reason": "drift",
        "notes": ["recent window not exported: ClientError: AccessDenied"],
    }
    found = {
        "lock": None,
        "last_run": None,
        "cooldown_until": None,
        "runs_today": 1,
        "max_runs_per_day": 3,
        "new_rows": 0,
        "min_new_labelled_rows": 500,
        "pending": [],
        "decisions": [decision],
    }
    # WHEN the status is rendered, THEN the note is shown under its decision
    lines = retraining_command.render(found)
    assert lines[-1] == "      note: recent window not exported: ClientError: AccessDenied"
    assert "started" in lines[-2]


def _captured(data: str, content_type: str = "application/json", failed: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"eventId": "e", "inferenceTime": "2031-03-04T10:00:00Z"}
    if failed:
        metadata["invocationStatus"] = "Failed"
    output = {"observedContentType": content_type, "mode": "OUTPUT", "data": data, "encoding": "JSON"}
    return {"captureData": {"endpointOutput": output}, "eventMetadata": metadata}


def test_shadow_answers_that_cannot_be_read_are_counted_not_silently_left_out() -> None:
    # GIVEN three requests: both answered one, the shadow garbled one, and failed one
    good = '{"predictions": [1], "probabilities": [[0.2, 0.8]]}'
    production = {k: _captured(good) for k in ("r1", "r2", "r3")}
    shadow_answers = {"r1": _captured(good), "r2": _captured("not json"), "r3": _captured("", failed=True)}
    comparison = shadow.ShadowComparison(
        "churn",
        "arn:pkg/2",
        datetime(2031, 3, 4, tzinfo=UTC),
        shadow.VariantFigures("AllTraffic", answers=3),
        shadow.VariantFigures("Shadow", answers=3, failures=1),
    )
    # WHEN they are compared
    shadow._agreement(comparison, production, shadow_answers)
    # THEN one pair is compared, and the report says the shadow's other answer was unreadable
    assert (comparison.paired_requests, comparison.agreement) == (1, 1.0)
    assert (comparison.production.unreadable, comparison.shadow.unreadable) == (0, 1)
    assert "3 answers captured, 1 failed, 1 unreadable (not compared)" in comparison.lines()[-1]
