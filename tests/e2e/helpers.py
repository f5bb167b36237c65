"""Helpers of the end-to-end tests: the `mlcycle` CLI as a user runs it, and reading a provisioned platform
(executions, registry, S3 objects) the way the tests assert on it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mlcycle.application import cycle
from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings
from mlcycle.data.prepare import Upload
from mlcycle.features import FeatureStore, ingest_rows
from mlcycle.local.session import LocalPlatform

REPO = Path(__file__).resolve().parents[2]
CURATED_KEY = "curated/churn/ingest_date=2026-01-31/{name}.parquet"


def cli_env() -> dict[str, str]:
    """The environment for `mlcycle` subprocesses: this checkout's code, whatever the cwd."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


def run_mlcycle(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`mlcycle ARGS` in ``cwd``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mlcycle.cli", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Run:
    """One execution's outcome: its ARN, status, output or error, and the states it entered."""

    def __init__(self, sfn: Any, arn: str) -> None:
        self.arn, self.name = arn, arn.rsplit(":", 1)[1]
        described = sfn.describe_execution(executionArn=arn)
        self.status: str = described["status"]
        self.output: dict[str, Any] = json.loads(described.get("output") or "{}")
        self.history: list[dict[str, Any]] = sfn.get_execution_history(executionArn=arn, maxResults=1000)[
            "events"
        ]
        failed = [
            e["executionFailedEventDetails"] for e in self.history if "executionFailedEventDetails" in e
        ]
        self.error = failed[0].get("error", "") if failed else ""
        self.cause = failed[0].get("cause", "") if failed else ""

    @property
    def states(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e
        ]


def run_training(local: LocalPlatform, timeout: float = 300) -> Run:
    """Start the training pipeline and wait for its end."""
    sfn = local.clients.sfn
    arn = cycle.start_training(sfn, local.platform, {"poll_seconds": 1})
    deadline = time.monotonic() + timeout
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"execution {arn} still running after {timeout}s"
        time.sleep(0.5)
    return Run(sfn, arn)


def latest_training(local: LocalPlatform) -> Run:
    """The training pipeline's most recent execution."""
    sfn = local.clients.sfn
    executions = sfn.list_executions(stateMachineArn=local.platform.training_state_machine)["executions"]
    return Run(sfn, max(executions, key=lambda e: e["startDate"])["executionArn"])


def curate(
    local: LocalPlatform, settings: Settings, frame: pd.DataFrame, name: str, *, features: bool = True
) -> list[str]:
    """Curated Parquet for ``frame`` written directly (and, unless told not to, its rows in the feature views,
    batch ``name``, through the library); the keys written, for :func:`delete`."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    key = CURATED_KEY.format(name=name)
    local.clients.s3.put_object(Bucket=local.platform.curated_bucket, Key=key, Body=buffer.getvalue())
    if not features:
        return [key]
    store = FeatureStore.from_settings(
        settings, features_bucket=local.platform.features_bucket, s3=local.clients.s3
    )
    ingested = ingest_rows(store, settings.problem.dataset.name, frame, batch_id=name)
    return [key] + [
        f"{v.view}/event_date={day}/{name}.parquet" for v in ingested.views for day in v.partitions
    ]


def delete(local: LocalPlatform, keys: list[str]) -> None:
    curated, features = keys[0], keys[1:]
    local.clients.s3.delete_object(Bucket=local.platform.curated_bucket, Key=curated)
    for key in features:
        local.clients.s3.delete_object(Bucket=local.platform.features_bucket, Key=key)


def clear_curated(local: LocalPlatform, dataset: str = "churn") -> None:
    """Remove every curated object of ``dataset``: the training pipeline then reads only what comes next."""
    s3, bucket = local.clients.s3, local.platform.curated_bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"curated/{dataset}/"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])


def put_upload(local: LocalPlatform, key: str, body: bytes) -> str:
    """Put ``body`` in the landing bucket at ``key``; the upload id prepare-data gives it."""
    bucket = local.platform.landing_bucket
    put = local.clients.s3.put_object(Bucket=bucket, Key=key, Body=body)
    return Upload(bucket, key, put.get("VersionId")).upload_id


def packages(local: LocalPlatform, settings: Settings) -> list[dict[str, Any]]:
    listed = local.clients.sagemaker.list_model_packages(ModelPackageGroupName=settings.model_package_group)
    return list(listed["ModelPackageSummaryList"])


def s3_json(local: LocalPlatform, uri: str) -> dict[str, Any]:
    bucket, key = split_s3_uri(uri)
    loaded: dict[str, Any] = json.loads(local.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return loaded


def failure_report(local: LocalPlatform, run: Run) -> dict[str, Any]:
    return s3_json(local, f"s3://{local.platform.artifacts_bucket}/failures/{run.name}/report.json")


def of_type(events: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["detail-type"] == detail_type]
