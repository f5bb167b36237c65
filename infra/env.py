"""Environment variables of our functions: the values, per function; the names live in mlcycle.names."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn

from mlcycle.config import Settings
from mlcycle.names import Env


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
    monitor_table: dynamodb.ITable | None = None,
    alert_table: dynamodb.ITable | None = None,
    alerts_topic: sns.ITopic | None = None,
    retraining_table: dynamodb.ITable | None = None,
    training_state_machine: sfn.IStateMachine | None = None,
    large_upload_state_machine: sfn.IStateMachine | None = None,
    rollback_alarms: Sequence[cloudwatch.IAlarm] = (),
) -> dict[str, str]:
    """The variables one function uses, and only those: pass what it needs."""
    values = {
        Env.LANDING_BUCKET: landing.bucket_name if landing else None,
        Env.CURATED_BUCKET: curated.bucket_name if curated else None,
        Env.ARTIFACTS_BUCKET: artifacts.bucket_name if artifacts else None,
        Env.MONITORING_BUCKET: monitoring.bucket_name if monitoring else None,
        Env.EVENT_BUS: bus.event_bus_name if bus else None,
        Env.GLUE_DATABASE: glue_database,
        Env.SAGEMAKER_ROLE_ARN: sagemaker_role.role_arn if sagemaker_role else None,
        Env.KMS_KEY_ARN: key.key_arn if key else None,
        Env.FEATURES_BUCKET: features.bucket_name if features else None,
        Env.ONLINE_TABLE: online_table.table_name if online_table else None,
        Env.IDEMPOTENCY_TABLE: idempotency_table.table_name if idempotency_table else None,
        Env.LINEAGE_TABLE: lineage_table.table_name if lineage_table else None,
        Env.MONITOR_TABLE: monitor_table.table_name if monitor_table else None,
        Env.ALERT_TABLE: alert_table.table_name if alert_table else None,
        Env.ALERTS_TOPIC: alerts_topic.topic_arn if alerts_topic else None,
        Env.RETRAINING_TABLE: retraining_table.table_name if retraining_table else None,
        Env.TRAINING_STATE_MACHINE: (
            training_state_machine.state_machine_arn if training_state_machine else None
        ),
        Env.LARGE_UPLOAD_STATE_MACHINE: (
            large_upload_state_machine.state_machine_arn if large_upload_state_machine else None
        ),
        Env.ROLLBACK_ALARMS: ",".join(a.alarm_name for a in rollback_alarms) if rollback_alarms else None,
        Env.SERVICE_NAME: f"{settings.project}-{service.replace('_', '-')}",
    }
    return {str(name): value for name, value in values.items() if value is not None}
