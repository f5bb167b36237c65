"""The names the parts of mlcycle share: one home for each contract between infra, the Lambdas, the
embedded AWS and the CLI.

* :class:`Env`: the environment variables the CDK app sets on our functions and
  :mod:`mlcycle.runtime` reads;
* :class:`Output`: the stack outputs the CDK app exports and the application layer reads to find the
  platform (:class:`mlcycle.application.platform.Platform`);
* :data:`EVENT_SOURCE` and :class:`EventType`: our events on the bus (infra's rules match them, the
  domain puts them);
* the AWS-owned event names we listen for.

A name is written here once and imported everywhere else; ``tests/unit/test_names.py`` ties each
set to the code that reads it.
"""

from __future__ import annotations

from enum import StrEnum


class Env(StrEnum):
    """Environment variables of our Lambda functions (each function gets only those it uses)."""

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
    #: The monitors' state: checkpoints, windows and debounce (mlcycle.monitoring.windows).
    MONITOR_TABLE = "MLCYCLE_MONITOR_TABLE"
    #: The alert router's state: alerts, groups, silences, deliveries (mlcycle.alerting.state).
    ALERT_TABLE = "MLCYCLE_ALERT_TABLE"
    #: The SNS topic of the ``sns`` alert channel (email and SMS subscribers).
    ALERTS_TOPIC = "MLCYCLE_ALERTS_TOPIC"
    #: The retraining controller's state: lock, runs, pending triggers, new rows (mlcycle.retraining).
    RETRAINING_TABLE = "MLCYCLE_RETRAINING_TABLE"
    TRAINING_STATE_MACHINE = "MLCYCLE_TRAINING_STATE_MACHINE"
    #: Comma-separated names of the alarms that roll a deployment back.
    ROLLBACK_ALARMS = "MLCYCLE_ROLLBACK_ALARMS"
    #: Powertools' own variable: the service name in logs, traces and metrics.
    SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"

    @property
    def field(self) -> str:
        """The attribute of :class:`mlcycle.runtime.FunctionEnvironment` that holds this variable."""
        return self.value.removeprefix("MLCYCLE_").lower()


class Output(StrEnum):
    """The stack's CfnOutputs: how a CLI or a runtime finds the platform's pieces by role."""

    LANDING_BUCKET = "LandingBucketName"
    CURATED_BUCKET = "CuratedBucketName"
    ARTIFACTS_BUCKET = "ArtifactsBucketName"
    MONITORING_BUCKET = "MonitoringBucketName"
    TRAINING_STATE_MACHINE = "TrainingStateMachineArn"
    EVENT_BUS = "EventBusName"
    LINEAGE_TABLE = "LineageTableName"
    FEATURES_BUCKET = "FeaturesBucketName"
    ONLINE_TABLE = "OnlineTableName"
    GLUE_DATABASE = "GlueDatabaseName"
    ATHENA_WORKGROUP = "AthenaWorkGroupName"
    #: Execution role of the SageMaker models and jobs the CLI creates (batch transform).
    SAGEMAKER_ROLE = "SageMakerRoleArn"
    #: The monitors' checkpoints, windows and findings (``mlcycle monitor status``).
    MONITOR_TABLE = "MonitorTableName"
    #: Alerts, silences and deliveries (``mlcycle alerts``).
    ALERT_TABLE = "AlertTableName"
    #: The topic of the ``sns`` alert channel (``mlcycle alerts test``).
    ALERTS_TOPIC = "AlertsTopicArn"
    #: The retraining controller's decisions (``mlcycle retraining status``).
    RETRAINING_TABLE = "RetrainingTableName"

    @property
    def field(self) -> str:
        """The attribute of the application layer's ``Platform`` that holds this output."""
        return self.name.lower()


#: The ``source`` of every event mlcycle puts on its bus.
EVENT_SOURCE = "mlcycle"


class EventType(StrEnum):
    """The ``detail-type`` of each fact mlcycle puts on its bus."""

    DATASET_VALIDATED = "DatasetValidated"
    DATASET_QUARANTINED = "DatasetQuarantined"
    #: An upload's curated rows are in the feature store: training sets built now see their features.
    FEATURES_INGESTED = "FeaturesIngested"
    MODEL_REGISTERED = "ModelRegistered"
    MODEL_DEPLOYED = "ModelDeployed"
    #: A registered version waits for a human: it did not beat the champion by the approval margin.
    MODEL_REVIEW_REQUESTED = "ModelReviewRequested"
    #: The training pipeline stopped; the detail names its failure report in S3.
    TRAINING_FAILED = "TrainingFailed"
    #: A deployment was rolled back (by an alarm, or by hand); the previous model serves.
    DEPLOYMENT_ROLLED_BACK = "DeploymentRolledBack"
    #: Monitor findings (after the debounce), each with its recovery when it clears.
    DATA_QUALITY_VIOLATED = "DataQualityViolated"
    DATA_QUALITY_RECOVERED = "DataQualityRecovered"
    DRIFT_DETECTED = "DriftDetected"
    DRIFT_RECOVERED = "DriftRecovered"
    MODEL_QUALITY_DEGRADED = "ModelQualityDegraded"
    MODEL_QUALITY_RECOVERED = "ModelQualityRecovered"
    BIAS_DETECTED = "BiasDetected"
    BIAS_RECOVERED = "BiasRecovered"
    KPI_BREACHED = "KpiBreached"
    KPI_RECOVERED = "KpiRecovered"
    #: The retraining controller started a training run; the detail names its trigger and reason.
    RETRAINING_STARTED = "RetrainingStarted"
    #: The retraining controller turned a trigger down (cooldown, budget, a run in flight, too little new
    #: data); the detail says which guard and when the trigger may succeed.
    RETRAINING_DEFERRED = "RetrainingDeferred"


#: SageMaker's own events (default bus) that the platform reacts to.
SAGEMAKER_SOURCE = "aws.sagemaker"
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
#: CloudWatch's alarm transitions on the default bus (the alert router listens).
CLOUDWATCH_SOURCE = "aws.cloudwatch"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"

#: On a model's inference container: the share of predictions that fail on purpose (fault injection for
#: testing the deployment guardrails; pipelines/inference.py reads it under the same name).
MODEL_FAULT_ENV = "MLCYCLE_FAULT_MODEL_ERROR_RATE"
