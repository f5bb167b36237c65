"""EventBridge (model package Approved) -> deploy it to the project's endpoint (created, or updated under
the deployment policy). How it ends (``ModelDeployed`` or ``DeploymentRolledBack``) is told by
``functions.deployment_outcome`` when the endpoint is InService again."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, deployment, lineage, runtime

logger = Logger()
tracer = Tracer()


class Environment(runtime.FunctionEnvironment):
    handler = "functions.deploy_model"
    monitoring_bucket: str
    sagemaker_role_arn: str
    lineage_table: str | None = None
    #: Comma-separated: the alarms that roll an update back (none: updates shift without guardrails).
    rollback_alarms: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    settings, env = runtime.settings(), runtime.environment(Environment)
    package_arn = event.detail["ModelPackageArn"]
    result = deployment.deploy(
        settings,
        package_arn,
        sagemaker=aws.client("sagemaker"),
        role_arn=env.sagemaker_role_arn,
        capture_uri=f"s3://{env.monitoring_bucket}/capture",
        rollback_alarms=[a for a in (env.rollback_alarms or "").split(",") if a],
    )
    detail = asdict(result)
    if env.lineage_table:
        lineage.record_deployment(
            lineage.LineageStore(env.lineage_table, client=aws.client("dynamodb")),
            model_package_arn=package_arn,
            endpoint=result.endpoint_name,
            endpoint_config=result.endpoint_config_name,
        )
    logger.info("model deployed", extra=detail)
    return detail
