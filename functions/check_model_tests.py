"""Step Functions task, the tests gate: read the evaluation job's report for the Choice that follows."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from mlcycle import aws, registry

logger = Logger()
tracer = Tracer()


class Request(BaseModel):
    evaluation_prefix: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.model_validate(event)
    gate = registry.check_evaluation(aws.client("s3"), request.evaluation_prefix)
    logger.info("model tests", extra={"passed": gate["passed"], "summary": gate["summary"]})
    return gate
