"""EventBridge (findings, their recoveries, validated uploads on our bus; the retraining schedule) ->
the retraining controller's decision: start the training pipeline, or say why not (mlcycle.retraining).

Every trigger comes here rather than to the state machine, so the guards (single flight, cooldown, a
daily budget, enough new labelled rows) hold whatever asks for a run, and each run carries its reason.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, runtime
from mlcycle.retraining import controller

logger = Logger()
tracer = Tracer()


class Environment(runtime.FunctionEnvironment):
    handler = "functions.retraining_controller"
    retraining_table: str
    training_state_machine: str
    event_bus: str
    lineage_table: str | None = None
    #: The three below, together, let a run judge the challenger on the monitors' recent labelled rows.
    monitor_table: str | None = None
    monitoring_bucket: str | None = None
    artifacts_bucket: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings, env = runtime.settings(), runtime.environment(Environment)
    platform = controller.Platform(
        dynamodb=aws.client("dynamodb"),
        stepfunctions=aws.client("stepfunctions"),
        events=aws.client("events"),
        s3=aws.client("s3"),
        table=env.retraining_table,
        state_machine=env.training_state_machine,
        event_bus=env.event_bus,
        lineage_table=env.lineage_table,
        monitor_table=env.monitor_table,
        monitoring_bucket=env.monitoring_bucket,
        artifacts_bucket=env.artifacts_bucket,
    )
    # An explicit {"trigger": "Schedule"} has no event id: the request's (kept across Lambda's retries).
    decision = controller.Controller(settings, platform).handle(event, fallback_id=context.aws_request_id)
    detail = decision.as_dict()
    logger.info("retraining decision", extra=detail)
    return detail
