"""Step Functions task: a trained, evaluated and tested model -> quality gate -> model package.

A version that does not beat the champion by the approval margin waits as PendingManualApproval, and
``ModelReviewRequested`` on the bus asks a human to decide.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from mlcycle import aws, events, registry, runtime
from mlcycle import lineage as mlcycle_lineage
from mlcycle.config import Settings
from mlcycle.names import MODEL_FAULT_ENV, EventType
from mlcycle.pipeline_runs import FaultInjection

logger = Logger()
tracer = Tracer()


class Environment(runtime.FunctionEnvironment):
    handler = "functions.register_model"
    artifacts_bucket: str
    event_bus: str
    lineage_table: str | None = None


class TrainingSetRef(BaseModel):
    training_set_id: str
    manifest_uri: str


class Request(BaseModel):
    training_job_name: str
    evaluation_prefix: str
    execution_arn: str = ""
    evaluation_job_name: str = ""
    training_set: TrainingSetRef
    #: A run started with fault injection registers a deliberately broken model (named on the package).
    fault_injection: FaultInjection | None = None


def lineage(request: Request, settings: Settings) -> dict[str, str]:
    """What produced the model: data (the manifest names the data versions), code (added by the registry
    from the job), parameters and the run."""
    faults = request.fault_injection
    return {
        **({"fault_injection": f"model_error_rate={faults.model_error_rate}"} if faults else {}),
        "training_job": request.training_job_name,
        "evaluation_job": request.evaluation_job_name,
        "training_set_id": request.training_set.training_set_id,
        "training_set_manifest": request.training_set.manifest_uri,
        "execution_arn": request.execution_arn,
        "model_family": settings.problem.model.family,
        "parameters": json.dumps(settings.problem.model.hyperparameters, sort_keys=True),
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.model_validate(event)
    settings, env = runtime.settings(), runtime.environment(Environment)
    sagemaker = aws.client("sagemaker")
    result = registry.read_training_job(
        sagemaker, aws.client("s3"), request.training_job_name, request.evaluation_prefix
    )
    faults = request.fault_injection
    registration = registry.register(
        settings,
        result,
        lineage(request, settings),
        sagemaker=sagemaker,
        container_environment={MODEL_FAULT_ENV: str(faults.model_error_rate)} if faults else None,
    )
    if env.lineage_table:
        mlcycle_lineage.record_model(
            mlcycle_lineage.LineageStore(env.lineage_table, client=aws.client("dynamodb")),
            training_job=request.training_job_name,
            training_set_id=request.training_set.training_set_id,
            model_package_arn=registration.model_package_arn,
            metrics=result.metrics,
        )
    detail = asdict(registration) | {"metrics": result.metrics, "evaluation_uri": result.evaluation_uri}
    bus = aws.client("events")
    events.publish(bus, env.event_bus, EventType.MODEL_REGISTERED, detail)
    if registration.approval_status == registry.PENDING:
        events.publish(bus, env.event_bus, EventType.MODEL_REVIEW_REQUESTED, detail)
    logger.info("model registered", extra=detail)
    return detail
