"""Environment variables of our functions; the names are the contract in docs/architecture.md."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn

from mlcycle.config import Settings

LANDING_BUCKET = "MLCYCLE_LANDING_BUCKET"
CURATED_BUCKET = "MLCYCLE_CURATED_BUCKET"
ARTIFACTS_BUCKET = "MLCYCLE_ARTIFACTS_BUCKET"
MONITORING_BUCKET = "MLCYCLE_MONITORING_BUCKET"
EVENT_BUS = "MLCYCLE_EVENT_BUS"
GLUE_DATABASE = "MLCYCLE_GLUE_DATABASE"
SAGEMAKER_ROLE_ARN = "MLCYCLE_SAGEMAKER_ROLE_ARN"
KMS_KEY_ARN = "MLCYCLE_KMS_KEY_ARN"
FEATURES_BUCKET = "MLCYCLE_FEATURES_BUCKET"
ONLINE_TABLE = "MLCYCLE_ONLINE_TABLE"
IDEMPOTENCY_TABLE = "MLCYCLE_IDEMPOTENCY_TABLE"
LINEAGE_TABLE = "MLCYCLE_LINEAGE_TABLE"
LARGE_UPLOAD_STATE_MACHINE = "MLCYCLE_LARGE_UPLOAD_STATE_MACHINE"
SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"


def build(
    settings: Settings,
    service: str,
    *,
    landing: s3.IBucket | None = None,
    curated: s3.IBucket | None = None,
    artifacts: s3.IBucket | None = None,
    monitoring: s3.IBucket | None = None,
    bus: events.IEventBus | None = None,
    glue_database: str | None = None,
    sagemaker_role: iam.IRole | None = None,
    key: kms.IKey | None = None,
    features: s3.IBucket | None = None,
    online_table: dynamodb.ITable | None = None,
    idempotency_table: dynamodb.ITable | None = None,
    lineage_table: dynamodb.ITable | None = None,
    large_upload_state_machine: sfn.IStateMachine | None = None,
) -> dict[str, str]:
    """The variables one function uses, and only those: pass what it needs."""
    values = {
        LANDING_BUCKET: landing.bucket_name if landing else None,
        CURATED_BUCKET: curated.bucket_name if curated else None,
        ARTIFACTS_BUCKET: artifacts.bucket_name if artifacts else None,
        MONITORING_BUCKET: monitoring.bucket_name if monitoring else None,
        EVENT_BUS: bus.event_bus_name if bus else None,
        GLUE_DATABASE: glue_database,
        SAGEMAKER_ROLE_ARN: sagemaker_role.role_arn if sagemaker_role else None,
        KMS_KEY_ARN: key.key_arn if key else None,
        FEATURES_BUCKET: features.bucket_name if features else None,
        ONLINE_TABLE: online_table.table_name if online_table else None,
        IDEMPOTENCY_TABLE: idempotency_table.table_name if idempotency_table else None,
        LINEAGE_TABLE: lineage_table.table_name if lineage_table else None,
        LARGE_UPLOAD_STATE_MACHINE: (
            large_upload_state_machine.state_machine_arn if large_upload_state_machine else None
        ),
        SERVICE_NAME: f"{settings.project}-{service.replace('_', '-')}",
    }
    return {name: value for name, value in values.items() if value is not None}
