"""EventBridge (SageMaker Endpoint State Change, our endpoint InService) -> how the deployment ended.

Once a deployment concluded, the endpoint's variant gets its target-tracking autoscaling (provisioned
endpoints; serverless ones scale themselves). A deployment that reached the endpoint emits
``ModelDeployed``; one that SageMaker rolled back (an alarm fired during the canary, or the new fleet
failed) is recorded in the lineage store and on the model package, and emits ``DeploymentRolledBack``
naming the alarm. The previous model keeps serving.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, deployment, events, lineage, registry, runtime
from mlcycle.names import EventType

logger = Logger()
tracer = Tracer()


class Environment(runtime.FunctionEnvironment):
    handler = "functions.deployment_outcome"
    event_bus: str
    lineage_table: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    settings, env = runtime.settings(), runtime.environment(Environment)
    sagemaker = aws.client("sagemaker")
    result = deployment.outcome(settings, dict(event.detail), sagemaker=sagemaker)
    if result is None:
        return {"outcome": None}
    # Either way the endpoint is InService with our variant: its capacity follows the settings.
    if deployment.ensure_autoscaling(settings, autoscaling=aws.client("application-autoscaling")):
        logger.info("autoscaling configured", extra={"resource": deployment.scaling_resource(settings)})
    detail = asdict(result)
    if result.outcome == "rolled_back":
        if env.lineage_table:
            lineage.record_rollback(
                lineage.LineageStore(env.lineage_table, client=aws.client("dynamodb")),
                model_package_arn=result.model_package_arn,
                endpoint=result.endpoint_name,
                endpoint_config=result.endpoint_config_name,
                reason=result.reason,
            )
        if result.model_package_arn:
            package = result.model_package_arn
            registry.record_deployment_outcome(sagemaker, package, "rolled_back", result.reason)
        events.publish(aws.client("events"), env.event_bus, EventType.DEPLOYMENT_ROLLED_BACK, detail)
        logger.warning("deployment rolled back", extra=detail)
    else:
        if result.model_package_arn:
            registry.record_deployment_outcome(sagemaker, result.model_package_arn, "deployed")
        events.publish(aws.client("events"), env.event_bus, EventType.MODEL_DEPLOYED, detail)
        logger.info("model deployed", extra=detail)
    return detail
