"""The local ML cycle, step by step, on the embedded AWS: what ``make demo`` runs.

Every step goes through the same AWS APIs the deployed platform uses: an S3 upload triggers the
prepare-data function, the training state machine synthesized by the CDK app runs the training job,
the registry step registers the model, the approval event deploys it, and InvokeEndpoint answers.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd

from mlcycle.application.platform import Platform
from mlcycle.config import Settings
from mlcycle.data.manifests import DatasetManifest, manifest_key, read_manifest
from mlcycle.data.prepare import Upload
from mlcycle.example import churn

Say = Callable[[str], None]


class CycleError(RuntimeError):
    """A step of the cycle did not reach its goal; the message says which and why."""


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll ``probe`` until it returns something truthy; raise with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise CycleError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Clients:
    s3: Any
    sfn: Any
    sagemaker: Any
    runtime: Any
    dynamodb: Any

    @classmethod
    def for_endpoint(cls, endpoint_url: str, region: str) -> Clients:
        session = boto3.session.Session(region_name=region)
        services = ("s3", "stepfunctions", "sagemaker", "sagemaker-runtime", "dynamodb")
        return cls(*(session.client(s, endpoint_url=endpoint_url) for s in services))  # type: ignore[call-overload]


def bundled_dataset() -> Path:
    return Path(churn.__file__).with_name("churn.csv")


def upload(clients: Clients, platform: Platform, path: Path, dataset: str, say: Say) -> str:
    """Put ``path`` in the landing bucket, as a user's upload; return its upload id (what its manifest and
    its events are named after)."""
    key = f"uploads/{dataset}/{path.name}"
    clients.s3.upload_file(str(path), platform.landing_bucket, key)
    version = clients.s3.head_object(Bucket=platform.landing_bucket, Key=key).get("VersionId")
    upload_id = Upload(platform.landing_bucket, key, version).upload_id
    say(
        f"uploaded {path.name} ({path.stat().st_size / 1024:.0f} KiB) to "
        f"s3://{platform.landing_bucket}/{key} (upload {upload_id})"
    )
    return upload_id


def wait_for_manifest(
    s3: Any, bucket: str, dataset: str, upload_id: str, timeout: float
) -> DatasetManifest | None:
    """The manifest prepare-data writes for the upload once it is checked, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return read_manifest(s3, bucket, manifest_key(dataset, upload_id))
        except s3.exceptions.NoSuchKey:
            time.sleep(0.5)
    return None


def wait_for_curated(
    clients: Clients, platform: Platform, dataset: str, upload_id: str, say: Say, *, timeout: float = 120
) -> list[str]:
    """Wait until prepare-data has checked this upload; report it; return its curated objects' keys."""
    manifest = wait_for_manifest(clients.s3, platform.curated_bucket, dataset, upload_id, timeout)
    if manifest is None:
        raise CycleError(f"upload {upload_id} was not checked within {timeout:.0f}s")
    if manifest.reason is not None:
        raise CycleError(f"upload {upload_id} was quarantined whole: {manifest.reason}")
    objects = len(manifest.objects)
    say(f"prepare-data wrote {manifest.curated_rows} curated rows to {objects} Parquet object(s)")
    if manifest.quarantined_rows:
        say(f"quarantined {manifest.quarantined_rows} rows: {manifest.summary}")
    return [obj.key for obj in manifest.objects]


def wait_for_features(
    s3: Any,
    platform: Platform,
    settings: Settings,
    keys: list[str],
    say: Say,
    *,
    timeout: float = 120,
) -> None:
    """Wait until the ingest function has written every curated object in ``keys`` to each feature view
    of its dataset: one offline object per view and event date, named after the upload (the batch)."""
    dataset = settings.problem.dataset
    views = [v for v in settings.feature_views if v.source == dataset.name]
    if not views or not platform.features_bucket:
        return
    wanted: set[str] = set()
    for key in keys:
        rows = pd.read_parquet(io.BytesIO(_get(s3, platform.curated_bucket, key)))
        batch = Path(key).stem
        for view in views:
            days = pd.to_datetime(rows[view.event_timestamp], utc=True).dropna().dt.strftime("%Y-%m-%d")
            wanted |= {f"{view.name}/event_date={day}/{batch}.parquet" for day in set(days)}

    def written() -> bool:
        paginator = s3.get_paginator("list_objects_v2")
        found = {
            o["Key"]
            for page in paginator.paginate(Bucket=platform.features_bucket)
            for o in page.get("Contents", [])
        }
        return wanted <= found

    wait_for("feature ingestion of the curated data", written, timeout)
    say(f"ingest-features wrote {len(wanted)} offline partition object(s) to {len(views)} feature view(s)")


def _get(s3: Any, bucket: str, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def run_training(
    clients: Clients, platform: Platform, say: Say, poll_seconds: int = 1, timeout: float = 600
) -> dict[str, Any]:
    """Start the training state machine and report each state as it is entered; return its output."""
    arn = start_training(clients.sfn, platform, {"poll_seconds": poll_seconds})
    say(f"started training pipeline execution {arn.rsplit(':', 1)[1]}")
    return follow_execution(clients.sfn, arn, say, timeout)


def start_training(sfn: Any, platform: Platform, pipeline_input: dict[str, Any]) -> str:
    arn: str = sfn.start_execution(
        stateMachineArn=platform.training_state_machine, input=json.dumps(pipeline_input)
    )["executionArn"]
    return arn


def follow_execution(sfn: Any, arn: str, say: Say, timeout: float = 600) -> dict[str, Any]:
    """Report each state of an execution once, when it is first entered, with the seconds since the start
    (a polling loop's wait and describe states re-enter every poll: those are not repeated); return its
    output or raise with its failure."""
    seen: set[int] = set()
    entered: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The status first: once it is final, the history read after it holds every state entered.
        described = sfn.describe_execution(executionArn=arn)
        started = described["startDate"]
        for event in sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]:
            if event["id"] in seen:
                continue
            seen.add(event["id"])
            name = event.get("stateEnteredEventDetails", {}).get("name")
            if event["type"].endswith("StateEntered") and name not in entered:
                entered.add(name)
                say(f"  {(event['timestamp'] - started).total_seconds():6.1f}s  {name}")
        if described["status"] == "SUCCEEDED":
            output: dict[str, Any] = json.loads(described["output"])
            return output
        if described["status"] in ("FAILED", "TIMED_OUT", "ABORTED"):
            raise CycleError(f"training pipeline {described['status']}: {_failure(sfn, arn, described)}")
        time.sleep(0.25)
    raise CycleError(f"training pipeline still running after {timeout:.0f}s")


def _failure(sfn: Any, arn: str, described: dict[str, Any]) -> str:
    if described.get("error") or described.get("cause"):
        return f"{described.get('error', '')}: {described.get('cause', '')}"
    for event in reversed(sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]):
        details = event.get("executionFailedEventDetails")
        if details:
            return f"{details.get('error', '')}: {details.get('cause', '')}"
    return "no reason recorded"


def show_lineage(clients: Clients, platform: Platform, model_package_arn: str, say: Say) -> None:
    """The model's chain, upstream to the upload and downstream to its deployment."""
    from mlcycle import lineage

    store = lineage.LineageStore(platform.lineage_table, client=clients.dynamodb)
    model = lineage.model_id(model_package_arn)
    upstream, downstream = store.trace(model, "upstream"), store.trace(model, "downstream")
    for line in lineage.render(store.artifact(model), upstream, downstream).splitlines():
        say(f"  {line}")


def wait_for_endpoint(clients: Clients, settings: Settings, say: Say, timeout: float = 180) -> dict[str, Any]:
    def in_service() -> dict[str, Any] | None:
        try:
            endpoint: dict[str, Any] = clients.sagemaker.describe_endpoint(
                EndpointName=settings.endpoint_name
            )
        except clients.sagemaker.exceptions.ClientError as error:
            # Not there yet (the deploy Lambda is creating it); denied or failed calls are not waited out.
            if error.response.get("Error", {}).get("Code") != "ValidationException":
                raise
            return None
        if endpoint["EndpointStatus"] == "Failed":
            raise CycleError(f"endpoint failed: {endpoint.get('FailureReason')}")
        return endpoint if endpoint["EndpointStatus"] == "InService" else None

    endpoint: dict[str, Any] = wait_for(f"endpoint {settings.endpoint_name} InService", in_service, timeout)
    say(f"endpoint {settings.endpoint_name} is InService (config {endpoint['EndpointConfigName']})")
    return endpoint


def invoke(clients: Clients, settings: Settings, rows: pd.DataFrame) -> dict[str, Any]:
    features = list(settings.problem.features)
    body = rows[features].to_csv(header=False, index=False)
    response = clients.runtime.invoke_endpoint(
        EndpointName=settings.endpoint_name, ContentType="text/csv", Accept="application/json", Body=body
    )
    result: dict[str, Any] = json.loads(response["Body"].read())
    return result


def score_holdout(clients: Clients, settings: Settings, say: Say, rows: int = 500) -> dict[str, float]:
    """Invoke the endpoint with fresh rows from the generator and compare with their labels."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    holdout = churn.generate(rows, seed=settings.problem.seed + 1000)
    answer = invoke(clients, settings, holdout)
    predictions = np.asarray(answer["predictions"])
    truth = holdout[settings.problem.target].to_numpy()
    scores = {"accuracy": float(accuracy_score(truth, predictions)), "rows": float(rows)}
    if "probabilities" in answer:
        scores["roc_auc"] = float(roc_auc_score(truth, np.asarray(answer["probabilities"])[:, 1]))
    for i in range(5):
        proba = answer["probabilities"][i][1] if "probabilities" in answer else float("nan")
        say(f"  row {i}: predicted {predictions[i]} (p={proba:.3f}), actual {truth[i]}")
    return scores
