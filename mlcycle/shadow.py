"""Shadow mode: a challenger awaiting review serves a copy of live traffic beside the champion.

With ``serving.shadow`` set, a version registered as PendingManualApproval is added to the endpoint as its
shadow variant (SageMaker's ``ShadowProductionVariants``): the champion still answers every request;
SageMaker sends a copy of ``traffic_percent`` % of them to the challenger, captures its answers under its
own variant name and publishes its metrics. :func:`compare` pairs both variants' captured answers and
reads their metrics (agreement, probability gap, latency, errors): what a reviewer looks at before
approving (the normal deployment under the policy then replaces the champion and drops the shadow) or
rejecting (:func:`end_shadow` returns the endpoint to the champion alone).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from mlcycle import deployment
from mlcycle.aws import split_s3_uri
from mlcycle.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker.literals import ProductionVariantInstanceTypeType
    from mypy_boto3_sagemaker.type_defs import ProductionVariantTypeDef


def shadow_variant(package_arn: str) -> str:
    """The shadow variant's name: one per challenger version, so its captures and metrics are its own."""
    return f"Shadow-v{package_arn.rsplit('/', 1)[1]}"


_REQUEST_FIELDS = ("VariantName", "ModelName", "InitialInstanceCount", "InstanceType", "InitialVariantWeight")


@dataclass
class ShadowDeployment:
    endpoint_name: str
    endpoint_config_name: str
    model_package_arn: str
    action: str  # "shadowing" | "unchanged" | "ended"


def deploy_shadow(
    settings: Settings, package_arn: str, *, sagemaker: SageMakerClient, role_arn: str
) -> ShadowDeployment | None:
    """Add ``package_arn``'s model as the endpoint's shadow variant (replacing any earlier shadow), or None
    when there is no endpoint yet (no champion to shadow). An endpoint in the middle of a deployment is
    an error: the function's retry tries again later."""
    if settings.serving.shadow is None:
        raise ValueError("shadow mode is off (settings: serving.shadow)")
    current = deployment.current_endpoint(sagemaker, settings.endpoint_name)
    if current is None:
        return None
    if current["EndpointStatus"] != "InService":
        raise RuntimeError(f"endpoint {settings.endpoint_name} is {current['EndpointStatus']}: retry later")
    production = deployment.production_config(sagemaker, current["EndpointConfigName"])
    model, _ = deployment.names(settings, package_arn)
    digest = hashlib.sha256(production.encode()).hexdigest()[:6]
    name = f"{model}-shadow-{digest}"
    if current["EndpointConfigName"] == name:
        return ShadowDeployment(settings.endpoint_name, name, package_arn, "unchanged")
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    deployment.ensure_model(sagemaker, model, package, role_arn, settings)
    _ensure_shadow_config(
        sagemaker, settings, name, production=production, model=model, package_arn=package_arn
    )
    sagemaker.update_endpoint(EndpointName=settings.endpoint_name, EndpointConfigName=name)
    return ShadowDeployment(settings.endpoint_name, name, package_arn, "shadowing")


def _ensure_shadow_config(
    sagemaker: SageMakerClient,
    settings: Settings,
    name: str,
    *,
    production: str,
    model: str,
    package_arn: str,
) -> None:
    """The champion's config with the challenger beside it as a shadow, copied ``traffic_percent`` %."""
    if deployment.exists(sagemaker.describe_endpoint_config, EndpointConfigName=name):
        return
    assert settings.serving.shadow is not None
    champion = sagemaker.describe_endpoint_config(EndpointConfigName=production)
    [serving] = champion["ProductionVariants"]
    kept = cast("ProductionVariantTypeDef", {k: v for k, v in serving.items() if k in _REQUEST_FIELDS})
    weight = float(serving.get("InitialVariantWeight", 1.0))
    shadow: ProductionVariantTypeDef = {
        "VariantName": shadow_variant(package_arn),
        "ModelName": model,
        "InstanceType": cast("ProductionVariantInstanceTypeType", settings.instances.endpoint),
        "InitialInstanceCount": 1,
        # SageMaker copies to a shadow the share of requests its weight bears to the production variant's.
        "InitialVariantWeight": weight * settings.serving.shadow.traffic_percent / 100,
    }
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[kept],
        ShadowProductionVariants=[shadow],
        **cast(
            "dict[str, Any]",
            ({"DataCaptureConfig": champion["DataCaptureConfig"]} if "DataCaptureConfig" in champion else {})
            | deployment.volume_key(settings),
        ),
        Tags=[
            {"Key": deployment.PREVIOUS_CONFIG_TAG, "Value": production},
            {"Key": deployment.SHADOW_TAG, "Value": package_arn},
        ],
    )


def shadowed_package(sagemaker: SageMakerClient, settings: Settings) -> str | None:
    """The model package the endpoint shadows now, if any."""
    current = deployment.current_endpoint(sagemaker, settings.endpoint_name)
    if current is None:
        return None
    return deployment.config_tags(sagemaker, current["EndpointConfigName"]).get(deployment.SHADOW_TAG)


def end_shadow(
    settings: Settings, package_arn: str, *, sagemaker: SageMakerClient
) -> ShadowDeployment | None:
    """Return the endpoint to the champion alone if it shadows ``package_arn`` (a rejected challenger)."""
    if shadowed_package(sagemaker, settings) != package_arn:
        return None
    current = deployment.current_endpoint(sagemaker, settings.endpoint_name)
    assert current is not None
    production = deployment.production_config(sagemaker, current["EndpointConfigName"])
    sagemaker.update_endpoint(EndpointName=settings.endpoint_name, EndpointConfigName=production)
    return ShadowDeployment(settings.endpoint_name, production, package_arn, "ended")


# ---- the comparison a reviewer reads ----------------------------------------------------------------


@dataclass
class VariantFigures:
    """One variant's side: captured answers, failed ones, and latency from its endpoint metrics."""

    variant: str
    answers: int = 0
    failures: int = 0
    #: Answered (no failure) but not readable as labels and probabilities: left out of the agreement.
    unreadable: int = 0
    invocations: float = 0.0
    latency_ms_avg: float | None = None
    latency_ms_max: float | None = None


@dataclass
class ShadowComparison:
    endpoint_name: str
    shadow_package: str
    since: datetime
    production: VariantFigures
    shadow: VariantFigures
    #: Requests answered by both, and the share of their rows on which the predicted labels agree.
    paired_requests: int = 0
    rows: int = 0
    agreement: float | None = None
    #: The largest gap between the two models' class probabilities on a row, averaged over rows.
    mean_probability_gap: float | None = None
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{value:.1%}"

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f} ms"

        gap = "-" if self.mean_probability_gap is None else f"{self.mean_probability_gap:.4f}"
        out = [
            f"endpoint   {self.endpoint_name}: shadowing {self.shadow_package}",
            f"since      {self.since:%Y-%m-%d %H:%M:%S} UTC",
            f"paired     {self.paired_requests} requests, {self.rows} rows",
            f"agreement  {pct(self.agreement)} of rows get the same label; mean probability gap {gap}",
        ]
        for side in (self.production, self.shadow):
            out.append(
                f"{side.variant:<10} {side.answers} answers captured, {side.failures} failed"
                + (f", {side.unreadable} unreadable (not compared)" if side.unreadable else "")
                + "; "
                f"latency avg {ms(side.latency_ms_avg)}, max {ms(side.latency_ms_max)} "
                f"over {side.invocations:.0f} invocations"
            )
        return out


def compare(
    settings: Settings, *, sagemaker: SageMakerClient, s3: S3Client, cloudwatch: Any, capture_uri: str
) -> ShadowComparison:
    """The champion's and the shadowing challenger's answers to the same requests, since the shadow began."""
    current = deployment.current_endpoint(sagemaker, settings.endpoint_name)
    if current is None:
        raise LookupError(f"endpoint {settings.endpoint_name} does not exist")
    config = current["EndpointConfigName"]
    package = deployment.config_tags(sagemaker, config).get(deployment.SHADOW_TAG)
    if not package:
        raise LookupError(f"endpoint {settings.endpoint_name} has no shadow variant (config {config})")
    since = sagemaker.describe_endpoint_config(EndpointConfigName=config)["CreationTime"].astimezone(UTC)
    root = f"{capture_uri.rstrip('/')}/{settings.endpoint_name}"
    production = _records(s3, f"{root}/{deployment.VARIANT}/", since)
    variant = shadow_variant(package)
    shadow = _records(s3, f"{root}/{variant}/", since)
    result = ShadowComparison(
        settings.endpoint_name,
        package,
        since,
        _figures(deployment.VARIANT, production, cloudwatch, settings, since),
        _figures(variant, shadow, cloudwatch, settings, since),
    )
    _agreement(result, production, shadow)
    return result


def _records(s3: S3Client, uri: str, since: datetime) -> dict[str, dict[str, Any]]:
    """Capture records under ``uri`` written since ``since``, by the key a copy shares with its original."""
    bucket, prefix = split_s3_uri(uri)
    found: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["LastModified"] < since:
                continue
            for line in s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().splitlines():
                record = json.loads(line)
                metadata = record.get("eventMetadata", {})
                if metadata.get("inferenceTime", "") < f"{since:%Y-%m-%dT%H:%M:%SZ}":
                    continue  # the same variant answered before this shadow began
                found[metadata.get("inferenceId") or metadata["eventId"]] = record
    return found


def _figures(
    variant: str, records: dict[str, dict[str, Any]], cloudwatch: Any, settings: Settings, since: datetime
) -> VariantFigures:
    figures = VariantFigures(variant, answers=len(records))
    figures.failures = sum(1 for r in records.values() if r["eventMetadata"].get("invocationStatus"))
    dims = [
        {"Name": "EndpointName", "Value": settings.endpoint_name},
        {"Name": "VariantName", "Value": variant},
    ]
    # One period over the whole shadow; the end a minute ahead, so the last second's datapoints count.
    end = datetime.now(UTC) + timedelta(minutes=1)
    period = int((end - since).total_seconds()) // 60 * 60 + 60
    stats = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=dims,
        StartTime=since,
        EndTime=end,
        Period=period,
        Statistics=["Average", "Maximum", "SampleCount"],
    )["Datapoints"]
    if stats:
        count = sum(d["SampleCount"] for d in stats)
        figures.invocations = count
        figures.latency_ms_avg = sum(d["Average"] * d["SampleCount"] for d in stats) / count / 1000
        figures.latency_ms_max = max(d["Maximum"] for d in stats) / 1000
    return figures


def _agreement(
    result: ShadowComparison, production: dict[str, dict[str, Any]], shadow: dict[str, dict[str, Any]]
) -> None:
    agree = rows = 0
    gaps: list[float] = []
    for side, records in ((result.production, production), (result.shadow, shadow)):
        side.unreadable = sum(
            1
            for r in records.values()
            if not r["eventMetadata"].get("invocationStatus") and _answer(r) is None
        )
    for key in production.keys() & shadow.keys():
        mine, theirs = _answer(production[key]), _answer(shadow[key])
        if mine is None or theirs is None or len(mine) != len(theirs):
            continue
        result.paired_requests += 1
        for index, ((label_a, proba_a), (label_b, proba_b)) in enumerate(zip(mine, theirs, strict=True)):
            rows += 1
            agree += label_a == label_b
            if proba_a and proba_b and len(proba_a) == len(proba_b):
                gaps.append(max(abs(a - b) for a, b in zip(proba_a, proba_b, strict=True)))
            if label_a != label_b and len(result.disagreements) < 10:
                result.disagreements.append(
                    {"request": key, "row": index, "champion": label_a, "shadow": label_b}
                )
    result.rows = rows
    result.agreement = agree / rows if rows else None
    result.mean_probability_gap = sum(gaps) / len(gaps) if gaps else None


def _answer(record: dict[str, Any]) -> list[tuple[Any, list[float]]] | None:
    """The rows of a captured answer as (label, probabilities); None for a failed or unreadable one."""
    if record["eventMetadata"].get("invocationStatus"):
        return None
    output = record.get("captureData", {}).get("endpointOutput")
    if not output or output.get("encoding") == "BASE64":
        return None
    kind = output.get("observedContentType", "").split(";")[0].strip().lower()
    data = output.get("data", "")
    try:
        return list(_decode(kind, data))
    except (ValueError, KeyError, TypeError):
        return None


def _decode(kind: str, data: str) -> Iterator[tuple[Any, list[float]]]:
    if kind == "application/json":
        body = json.loads(data)
        probabilities = body.get("probabilities") or [[] for _ in body["predictions"]]
        for label, proba in zip(body["predictions"], probabilities, strict=True):
            yield label, proba if isinstance(proba, list) else [proba]  # one class's, as some models give
    elif kind == "application/jsonlines":
        for line in data.splitlines():
            if line.strip():
                item = json.loads(line)
                proba = item.get("probabilities") or []
                yield item["prediction"], proba if isinstance(proba, list) else [proba]
    elif kind == "text/csv":
        for row in csv.reader(io.StringIO(data)):
            if row:
                yield row[0], [float(v) for v in row[1:]]
    else:
        raise ValueError(f"cannot read answers in {kind}")
