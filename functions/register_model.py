"""Step Functions task: a completed training job -> quality gate -> model package (or nothing)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from mlcycle import aws, events, registry, runtime

logger = Logger()
tracer = Tracer()


class TrainingSetRef(BaseModel):
    training_set_id: str
    manifest_uri: str


class Request(BaseModel):
    training_job_name: str
    execution_arn: str = ""
    training_set: TrainingSetRef


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.model_validate(event)
    settings, env = runtime.settings(), runtime.environment()
    sagemaker = aws.client("sagemaker")
    result = registry.read_training_job(sagemaker, aws.client("s3"), request.training_job_name)
    lineage = {
        "training_job": request.training_job_name,
        "training_set_id": request.training_set.training_set_id,
        "training_set_manifest": request.training_set.manifest_uri,
        "execution_arn": request.execution_arn,
        "model_family": settings.problem.model.family,
    }
    registration = registry.register(settings, result, lineage, sagemaker=sagemaker)
    detail = asdict(registration) | {"metrics": result.metrics}
    events.publish(aws.client("events"), env.event_bus, events.MODEL_REGISTERED, detail)
    logger.info("model registered", extra=detail)
    return detail
