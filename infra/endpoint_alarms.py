"""The endpoint's SLO alarms: SageMaker rolls a deployment back when one fires, and they alert.

Both watch the production variant (``EndpointName`` + ``VariantName``; a blue/green update keeps the
variant's name, so they watch the new fleet as it takes traffic):

* ``error_rate``: ``Invocation5XXErrors / Invocations`` (a model failure is a 5xx) above
  ``serving.max_error_rate``;
* ``latency``: p99 ``ModelLatency`` (microseconds) above ``serving.latency_p99_ms``.

Missing data does not breach: an endpoint with no traffic is healthy.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlcycle.config import Settings
from mlcycle.deployment import VARIANT

NAMESPACE = "AWS/SageMaker"


class EndpointAlarms(Construct):
    """Attributes: ``error_rate``, ``latency`` (alarms), ``rollback`` (both, for the deployment config)."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, alerts: sns.ITopic) -> None:
        super().__init__(scope, id)
        serving = settings.serving
        self._dimensions = {"EndpointName": settings.endpoint_name, "VariantName": VARIANT}
        self._period = cdk.Duration.seconds(serving.alarm_period_seconds)
        errors = cloudwatch.MathExpression(
            expression="errors / invocations",
            using_metrics={
                "errors": self._metric("Invocation5XXErrors", "Sum"),
                "invocations": self._metric("Invocations", "Sum"),
            },
            period=self._period,
            label="5xx rate",
        )
        self.error_rate = self._alarm(
            "ErrorRate",
            errors,
            serving.max_error_rate,
            f"{settings.endpoint_name}: 5xx and model errors above {serving.max_error_rate:.1%} of calls",
            settings,
        )
        latency = self._metric("ModelLatency", "p99")
        self.latency = self._alarm(
            "Latency",
            latency,
            serving.latency_p99_ms * 1000,
            f"{settings.endpoint_name}: p99 model latency above {serving.latency_p99_ms:g} ms",
            settings,
        )
        action = cw_actions.SnsAction(alerts)
        for alarm in (self.error_rate, self.latency):
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        self.rollback = (self.error_rate, self.latency)

    def _metric(self, name: str, statistic: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map=self._dimensions,
            statistic=statistic,
            period=self._period,
        )

    def _alarm(
        self,
        id: str,
        metric: cloudwatch.Metric | cloudwatch.MathExpression,
        threshold: float,
        description: str,
        settings: Settings,
    ) -> cloudwatch.Alarm:
        return metric.create_alarm(
            self,
            id,
            alarm_description=description,
            threshold=threshold,
            evaluation_periods=settings.serving.alarm_evaluation_periods,
            datapoints_to_alarm=settings.serving.alarm_datapoints,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
