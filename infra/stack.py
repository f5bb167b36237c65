"""The one deployable unit: composes the stage constructs and wires what they share."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.alert_router import AlertRouter
from infra.alerting import Alerting
from infra.checkov import CheckovAcknowledgments
from infra.data_lake import DataLake
from infra.data_preparation import DataPreparation
from infra.endpoint_alarms import EndpointAlarms
from infra.feature_store import FeatureStore
from infra.functions import FunctionFactory
from infra.lineage import Lineage
from infra.model_monitors import ModelMonitors
from infra.monitoring import Monitoring
from infra.registry import ModelRegistry
from infra.retraining import EventBus, Retraining
from infra.serving import Serving
from infra.slo_alarms import SloAlarms
from infra.training_pipeline import TrainingPipeline
from mlcycle.config import Settings
from mlcycle.names import Env, Output


class MlcycleStack(cdk.Stack):
    """The whole ML cycle. Each stage is an attribute: ``data_lake``, ``events``, ``alerting``,
    ``registry``, ``data_preparation``, ``training``, ``serving``, ``retraining``, ``alert_router``,
    ``monitoring``.
    """

    def __init__(self, scope: Construct, *, settings: Settings) -> None:
        env = cdk.Environment(account=settings.account, region=settings.region) if settings.account else None
        super().__init__(
            scope,
            settings.prefix,
            env=env,
            description=f"mlcycle {settings.prefix}: the ML cycle for {settings.problem.dataset.name}",
        )
        cdk.Tags.of(self).add("mlcycle:project", settings.project)
        cdk.Tags.of(self).add("mlcycle:stage", settings.stage)
        self.settings = settings
        self.data_lake = DataLake(self, "DataLake", settings=settings)
        key = self.data_lake.key
        self.events = EventBus(self, "Events", settings=settings)
        bus = self.events.bus
        self.alerting = Alerting(self, "Alerting", settings=settings, key=key)
        self.registry = ModelRegistry(self, "Registry", settings=settings)
        functions = FunctionFactory(self, "Functions", settings=settings, key=key)
        self.lineage = Lineage(self, "Lineage", key=key)
        self.data_preparation = DataPreparation(
            self,
            "DataPreparation",
            settings=settings,
            data_lake=self.data_lake,
            bus=bus,
            functions=functions,
            lineage=self.lineage,
        )
        self.feature_store = FeatureStore(
            self, "FeatureStore", settings=settings, data_lake=self.data_lake, bus=bus, functions=functions
        )
        self.training = TrainingPipeline(
            self,
            "Training",
            settings=settings,
            data_lake=self.data_lake,
            registry=self.registry,
            bus=bus,
            functions=functions,
        )
        self.endpoint_alarms = EndpointAlarms(
            self, "EndpointAlarms", settings=settings, alerts=self.alerting.alerts
        )
        self.serving = Serving(
            self,
            "Serving",
            settings=settings,
            data_lake=self.data_lake,
            registry=self.registry,
            bus=bus,
            sagemaker_role=self.training.sagemaker_role,
            functions=functions,
            rollback_alarms=self.endpoint_alarms.rollback,
        )
        # Lineage: curated versions -> build -> training set -> training run -> model -> deployment.
        for recorder in (
            self.training.build_training_set,
            self.training.register_model,
            self.serving.deploy_model,
            self.serving.deployment_outcome,
        ):
            self.lineage.grant_record(recorder)
            recorder.add_environment(Env.LINEAGE_TABLE, self.lineage.table.table_name)
        self.model_monitors = ModelMonitors(
            self,
            "ModelMonitors",
            settings=settings,
            data_lake=self.data_lake,
            registry=self.registry,
            serving=self.serving,
            bus=bus,
            functions=functions,
            alerts=self.alerting.alerts,
        )
        self.retraining = Retraining(
            self,
            "Retraining",
            settings=settings,
            bus=bus,
            state_machine=self.training.state_machine,
            functions=functions,
            data_lake=self.data_lake,
            lineage=self.lineage,
            monitor_table=self.model_monitors.table,
        )
        self.alert_router = AlertRouter(
            self,
            "AlertRouter",
            settings=settings,
            bus=bus,
            alerts=self.alerting.alerts,
            functions=functions,
            key=key,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings=settings,
            state_machine=self.training.state_machine,
            other_state_machines={"LargeUploads": self.data_preparation.large_uploads},
            functions=[
                self.data_preparation.prepare_data,
                self.data_preparation.plan_chunks,
                self.data_preparation.check_chunk,
                self.data_preparation.finish_upload,
                self.feature_store.ingest,
                self.training.validate_run,
                self.training.build_training_set,
                self.training.check_model_tests,
                self.training.register_model,
                self.training.report_failure,
                self.serving.deploy_model,
                self.serving.deployment_outcome,
                self.model_monitors.monitor,
                self.retraining.controller,
                self.alert_router.function,
            ],
            alerts=self.alerting.alerts,
        )
        self.slo_alarms = SloAlarms(
            self,
            "SloAlarms",
            settings=settings,
            alerts=self.alerting.alerts,
            dashboard=self.monitoring.dashboard,
        )
        self.model_monitors.add_to(self.monitoring.dashboard)
        self._outputs()
        cdk.Aspects.of(self).add(CheckovAcknowledgments(settings))

    def _outputs(self) -> None:
        """Names the CLI, the local runtime and operators need (the application layer's Platform)."""
        lake = self.data_lake
        values = {
            Output.LANDING_BUCKET: lake.landing.bucket_name,
            Output.CURATED_BUCKET: lake.curated.bucket_name,
            Output.ARTIFACTS_BUCKET: lake.artifacts.bucket_name,
            Output.MONITORING_BUCKET: lake.monitoring.bucket_name,
            Output.TRAINING_STATE_MACHINE: self.training.state_machine.state_machine_arn,
            Output.EVENT_BUS: self.events.bus.event_bus_name,
            Output.LINEAGE_TABLE: self.lineage.table.table_name,
            Output.FEATURES_BUCKET: lake.features.bucket_name,
            Output.ONLINE_TABLE: self.feature_store.online_table.table_name,
            Output.GLUE_DATABASE: lake.glue_database_name,
            Output.ATHENA_WORKGROUP: lake.athena_workgroup_name,
            # Batch predictions (mlcycle predict) create models and transform jobs that run as this role; it
            # already reads the model artifacts and reads and writes the artifacts bucket they use.
            Output.SAGEMAKER_ROLE: self.training.sagemaker_role.role_arn,
            Output.MONITOR_TABLE: self.model_monitors.table.table_name,
            Output.ALERT_TABLE: self.alert_router.table.table_name,
            Output.ALERTS_TOPIC: self.alerting.alerts.topic_arn,
            Output.RETRAINING_TABLE: self.retraining.table.table_name,
        }
        for name, value in values.items():
            cdk.CfnOutput(self, str(name), value=value)
