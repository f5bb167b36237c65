"""Monitoring: a dashboard of the platform's own health and the alarms that page through alerting.

Model monitoring (drift, quality, KPIs) builds on this in later stages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from mlcycle.config import Settings

PERIOD = cdk.Duration.minutes(5)


class Monitoring(Construct):
    """Attributes: ``dashboard``, ``training_failed`` (alarm), ``function_errors`` (alarms by function id)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        state_machine: sfn.IStateMachine,
        other_state_machines: Mapping[str, sfn.IStateMachine] | None = None,
        functions: Sequence[lambda_.IFunction],
        alerts: sns.ITopic,
    ) -> None:
        super().__init__(scope, id)
        action = cw_actions.SnsAction(alerts)
        self.training_failed = self._failure_alarm("Training", "training pipeline", state_machine, action)
        #: One failure alarm per other state machine (e.g. large uploads), by name.
        self.executions_failed = {
            name: self._failure_alarm(name, name, machine, action)
            for name, machine in (other_state_machines or {}).items()
        }
        self.function_errors: dict[str, cloudwatch.Alarm] = {}
        for fn in functions:
            alarm = fn.metric_errors(period=PERIOD).create_alarm(
                self,
                f"{fn.node.id}Errors",
                alarm_description=f"{fn.node.id} raised errors",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(action)
            self.function_errors[fn.node.id] = alarm
        self.dashboard = self._dashboard(settings, state_machine, functions)

    def _failure_alarm(
        self, id: str, what: str, machine: sfn.IStateMachine, action: cw_actions.SnsAction
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            f"{id}Failed",
            alarm_description=f"A {what} execution failed, timed out or was aborted",
            metric=cloudwatch.MathExpression(
                expression="failed + timedout + aborted",
                using_metrics={
                    "failed": machine.metric_failed(period=PERIOD),
                    "timedout": machine.metric_timed_out(period=PERIOD),
                    "aborted": machine.metric_aborted(period=PERIOD),
                },
                label="Failed executions",
                period=PERIOD,
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(action)
        return alarm

    def _dashboard(
        self, settings: Settings, machine: sfn.IStateMachine, functions: Sequence[lambda_.IFunction]
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{settings.prefix}-health")
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Training executions",
                left=[
                    machine.metric_started(period=PERIOD),
                    machine.metric_succeeded(period=PERIOD),
                    machine.metric_failed(period=PERIOD),
                    machine.metric_timed_out(period=PERIOD),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Training duration", left=[machine.metric_time(period=PERIOD)], width=12
            ),
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=[self.training_failed, *self.function_errors.values()], width=24
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Function invocations and errors",
                left=[fn.metric_invocations(period=PERIOD) for fn in functions],
                right=[fn.metric_errors(period=PERIOD) for fn in functions],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Function duration (p90)",
                left=[fn.metric_duration(period=PERIOD, statistic="p90") for fn in functions],
                width=12,
            ),
        )
        return dashboard
