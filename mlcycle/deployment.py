"""Deploy an approved model package to the project's SageMaker endpoint (create or update).

The model and endpoint config take names derived from the package version, so a redelivered approval
event finds them already there and only re-points the endpoint. Data capture is always configured: the
monitors read it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mlcycle.config import Settings

VARIANT = "AllTraffic"


@dataclass
class Deployment:
    endpoint_name: str
    endpoint_config_name: str
    model_name: str
    model_package_arn: str
    action: str  # "created" | "updated" | "unchanged"


def _names(settings: Settings, package_arn: str) -> tuple[str, str]:
    version = package_arn.rsplit("/", 1)[1]
    digest = hashlib.sha256(package_arn.encode()).hexdigest()[:8]
    base = f"{settings.prefix}-v{version}-{digest}"
    return base, f"{base}-config"


def _exists(call: Any, **kwargs: Any) -> bool:
    try:
        call(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return False
        raise
    return True


def _ensure_model(sagemaker: Any, name: str, package: dict[str, Any], role_arn: str) -> None:
    if _exists(sagemaker.describe_model, ModelName=name):
        return
    container = package["InferenceSpecification"]["Containers"][0]
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=role_arn,
        PrimaryContainer={
            "Image": container["Image"],
            "ModelDataUrl": container["ModelDataUrl"],
            "Environment": container.get("Environment", {}),
        },
        Tags=[{"Key": "mlcycle:model-package", "Value": package["ModelPackageArn"]}],
    )


def _ensure_endpoint_config(
    sagemaker: Any, name: str, model: str, settings: Settings, capture_uri: str
) -> None:
    if _exists(sagemaker.describe_endpoint_config, EndpointConfigName=name):
        return
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": VARIANT,
                "ModelName": model,
                "InitialInstanceCount": settings.instances.endpoint_initial_count,
                "InstanceType": settings.instances.endpoint,
                "InitialVariantWeight": 1.0,
            }
        ],
        DataCaptureConfig={
            "EnableCapture": settings.capture_percentage > 0,
            "InitialSamplingPercentage": max(settings.capture_percentage, 1),
            "DestinationS3Uri": capture_uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": ["text/csv"],
                "JsonContentTypes": ["application/json"],
            },
        },
    )


def deploy(
    settings: Settings,
    package_arn: str,
    *,
    sagemaker: Any,
    role_arn: str,
    capture_uri: str,
) -> Deployment:
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    if package["ModelApprovalStatus"] != "Approved":
        raise ValueError(
            f"{package_arn} is {package['ModelApprovalStatus']}, not Approved: refusing to deploy"
        )
    model, config = _names(settings, package_arn)
    _ensure_model(sagemaker, model, package, role_arn)
    _ensure_endpoint_config(sagemaker, config, model, settings, capture_uri)
    endpoint = settings.endpoint_name
    try:
        current = sagemaker.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
            raise
        sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        action = "created"
    else:
        if current["EndpointConfigName"] == config:
            action = "unchanged"
        else:
            sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
            action = "updated"
    return Deployment(endpoint, config, model, package_arn, action)
