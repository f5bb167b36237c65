"""Step Functions task: a failed run's report to S3 and ``TrainingFailed`` on the bus.

Every Catch of the training pipeline leads here with the error and cause; the state machine then fails
with that same error, so the report, the event and the execution all tell one story.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, events, pipeline_runs, runtime
from mlcycle.names import EventType

logger = Logger()
tracer = Tracer()


class Environment(runtime.FunctionEnvironment):
    handler = "functions.report_failure"
    artifacts_bucket: str
    event_bus: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failure = pipeline_runs.Failure.model_validate(event)
    env = runtime.environment(Environment)
    uri = pipeline_runs.write_failure_report(aws.client("s3"), env.artifacts_bucket, failure)
    detail = {"execution_arn": failure.execution_arn, "error": failure.error, "report_uri": uri}
    events.publish(
        aws.client("events"),
        env.event_bus,
        EventType.TRAINING_FAILED,
        detail | {"cause": failure.cause[:2000]},
    )
    logger.error("training pipeline failed", extra=detail)
    return detail | {"cause": failure.cause}
