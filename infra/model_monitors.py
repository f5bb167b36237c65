"""Model monitors: a Lambda per endpoint on an EventBridge schedule, reading the endpoint's capture.

Each run judges one window (mlcycle.monitoring.monitor): drift and data quality against the serving
model's reference, reports to the monitoring bucket, debounced findings as events on our bus (the
alerting and retraining stages listen for them). Its checkpoints, windows and findings live in a
DynamoDB table, so each captured request counts in exactly one window.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra import env
from infra.data_lake import DataLake
from infra.functions import FunctionFactory
from infra.gates import acknowledge, iam5_actions, iam5_resource
from infra.queues import dead_letter_queue
from infra.registry import ModelRegistry
from infra.serving import Serving
from infra.tables import encrypted_table
from mlcycle.config import Settings

#: The monitors' metric namespace (functions/monitor_endpoint.py's NAMESPACE; a test ties them).
NAMESPACE = "mlcycle/monitoring"


class ModelMonitors(Construct):
    """Attributes: ``table`` (checkpoints, windows, findings), ``monitor`` (the function), ``schedule``
    (its rule), ``dead_letters``, ``alarms`` (on the monitors' metrics, by name)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        data_lake: DataLake,
        registry: ModelRegistry,
        serving: Serving,
        bus: events.IEventBus,
        functions: FunctionFactory,
        alerts: sns.ITopic,
    ) -> None:
        super().__init__(scope, id)
        self._settings = settings
        self.table = encrypted_table(self, "State", key=data_lake.key, partition_key="pk", sort_key="sk")
        self.dead_letters = dead_letter_queue(self, "DeadLetters", key=data_lake.key)
        self.monitor = functions.function(
            self,
            "Monitor",
            handler="functions.monitor_endpoint.handler",
            description="One monitor window of the endpoint: drift and data quality of its captured traffic",
            environment=env.build(
                settings,
                "monitor_endpoint",
                monitoring=data_lake.monitoring,
                bus=bus,
                monitor_table=self.table,
            ),
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=2,
        )
        self._grant(self.monitor, data_lake, registry, serving, bus)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description=f"Monitor {settings.endpoint_name} every {settings.monitoring.schedule_minutes} min",
            schedule=events.Schedule.rate(cdk.Duration.minutes(settings.monitoring.schedule_minutes)),
        )
        self.schedule.add_target(
            targets.LambdaFunction(
                self.monitor,
                dead_letter_queue=self.dead_letters,
                retry_attempts=3,
                max_event_age=cdk.Duration.hours(2),
            )
        )
        self.alarms = self._alarms(settings, alerts)

    def metric(self, name: str) -> cloudwatch.Metric:
        """A monitor metric of the endpoint (functions/monitor_endpoint.py publishes it as EMF)."""
        return cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map={"endpoint": self._settings.endpoint_name},
            statistic="Maximum",
            period=cdk.Duration.minutes(self._settings.monitoring.schedule_minutes),
        )

    def _alarms(self, settings: Settings, alerts: sns.ITopic) -> dict[str, cloudwatch.Alarm]:
        """Drift and data quality, with the events' debounce: N of the last M windows."""
        debounce = settings.monitoring.debounce
        specs = {
            "drifted_feature_share": (settings.monitoring.drift_share, "the share of drifted features"),
            "data_quality_violations": (1.0, "features breaking data quality"),
        }
        alarms = {}
        for name, (threshold, what) in specs.items():
            alarm = self.metric(name).create_alarm(
                self,
                f"Alarm-{name}",
                alarm_description=f"{settings.endpoint_name}: {what} reached {threshold} in "
                f"{debounce.windows_breached} of the last {debounce.windows} monitor windows",
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=debounce.windows,
                datapoints_to_alarm=debounce.windows_breached,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cw_actions.SnsAction(alerts))
            alarms[name] = alarm
        return alarms

    def add_to(self, dashboard: cloudwatch.Dashboard) -> None:
        """The monitors' panels: drift share, data quality violations, label coverage, their alarms."""
        dashboard.add_widgets(
            *(
                cloudwatch.GraphWidget(title=f"Monitor: {name}", left=[self.metric(name)], width=8)
                for name in ("drifted_feature_share", "data_quality_violations", "label_coverage")
            )
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Monitor alarms", alarms=list(self.alarms.values()), width=24)
        )

    def _grant(
        self,
        fn: lambda_.Function,
        data_lake: DataLake,
        registry: ModelRegistry,
        serving: Serving,
        bus: events.IEventBus,
    ) -> None:
        self.table.grant_read_write_data(fn)
        data_lake.monitoring.grant_read_write(fn)  # capture in, reports out
        serving.endpoint_key.grant_decrypt(fn)  # capture is encrypted with the endpoint's key
        data_lake.artifacts.grant_read(fn)  # the models' drift references
        registry.grant_describe(fn)
        serving.grant_read_endpoint(fn)
        bus.grant_put_events_to(fn)
        acknowledge(
            fn.role or fn,
            *iam5_actions(
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
                "s3:GetObject*",
                "s3:GetBucket*",
                "s3:List*",
                "s3:DeleteObject*",
                "s3:Abort*",
            ),
            iam5_resource(data_lake.monitoring),
            iam5_resource(data_lake.artifacts),
            reason="The wildcards come from the CDK's bucket, key and queue grants: capture is read and "
            "reports are written under keys named at run time; the models' references are read.",
        )
