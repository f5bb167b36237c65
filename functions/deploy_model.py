"""EventBridge (model package state change) -> the project's endpoint.

Approved: deploy it (the endpoint is created, or updated under the deployment policy); how it ends
(``ModelDeployed`` or ``DeploymentRolledBack``) is told by ``functions.deployment_outcome`` when the
endpoint is InService again. With shadow mode on (settings ``serving.shadow``), PendingManualApproval adds
the version as the endpoint's shadow variant, and Rejected removes it again (mlcycle.shadow)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, deployment, lineage, runtime, shadow
from mlcycle.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

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
    package_arn, status = event.detail["ModelPackageArn"], event.detail.get("ModelApprovalStatus", "Approved")
    sagemaker = aws.client("sagemaker")
    if status != "Approved":
        return _shadow(settings, env, package_arn, status, sagemaker)
    result = deployment.deploy(
        settings,
        package_arn,
        sagemaker=sagemaker,
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


def _shadow(
    settings: Settings, env: Environment, package_arn: str, status: str, sagemaker: SageMakerClient
) -> dict[str, Any]:
    if settings.serving.shadow is None:  # the rule only sends these with shadow mode on
        return {"action": "ignored", "status": status}
    if status == "Rejected":
        ended = shadow.end_shadow(settings, package_arn, sagemaker=sagemaker)
        detail = asdict(ended) if ended else {"action": "not shadowed", "model_package_arn": package_arn}
    else:
        started = shadow.deploy_shadow(
            settings, package_arn, sagemaker=sagemaker, role_arn=env.sagemaker_role_arn
        )
        detail = (
            asdict(started)
            if started
            else {"action": "no endpoint to shadow", "model_package_arn": package_arn}
        )
    logger.info("shadow variant", extra=detail)
    return detail
