"""The alert router: one Lambda that turns the platform's events into notifications without alert fatigue
(mlcycle.alerting: fingerprints, routes, grouping, inhibition, silences, resolved notifications).

It listens to our bus (monitor findings and their recoveries, failed runs, rollbacks, retraining
decisions) and to the default bus (our alarms' state changes), and flushes its groups on a schedule (group
wait, group interval, repeats). Its state lives in a DynamoDB table written with conditional writes, so a
duplicated delivery notifies once. A delivery that still fails after its retries fails the invocation:
Lambda retries it and, in the end, the event lands in the dead-letter queue, while the failed delivery
stays visible in the table (``mlcycle alerts list``).

Webhook URLs and routing keys live in Secrets Manager under the names the settings give; the function is
granted to read those secrets, and reads them at run time (never in the template or the environment).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra import env
from infra.functions import FunctionFactory
from infra.gates import acknowledge, iam5_actions
from infra.queues import dead_letter_queue
from infra.tables import encrypted_table
from mlcycle.config import Settings
from mlcycle.names import ALARM_STATE_CHANGE, CLOUDWATCH_SOURCE, EVENT_SOURCE, EventType

#: Our events the router turns into alerts (or notes on them).
ROUTED_EVENTS = (
    EventType.DATA_QUALITY_VIOLATED,
    EventType.DATA_QUALITY_RECOVERED,
    EventType.DRIFT_DETECTED,
    EventType.DRIFT_RECOVERED,
    EventType.MODEL_QUALITY_DEGRADED,
    EventType.MODEL_QUALITY_RECOVERED,
    EventType.BIAS_DETECTED,
    EventType.BIAS_RECOVERED,
    EventType.KPI_BREACHED,
    EventType.KPI_RECOVERED,
    EventType.TRAINING_FAILED,
    EventType.DEPLOYMENT_ROLLED_BACK,
    EventType.RETRAINING_STARTED,
)


def flush_minutes(settings: Settings) -> int:
    """How often the groups are flushed: as often as the shortest timer needs, at most every minute.
    Timers of 0 need no flush (the router notifies as it receives); the repeat interval always does."""
    grouping = settings.alerts.grouping
    timers = (grouping.group_wait_seconds, grouping.group_interval_seconds, grouping.repeat_interval_seconds)
    return max(1, min(t for t in timers if t > 0) // 60)


class AlertRouter(Construct):
    """Attributes: ``table`` (alerts, groups, silences, deliveries), ``function``, ``dead_letters``,
    ``rules`` (by name: ``events``, ``alarms``, ``flush``)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        bus: events.IEventBus,
        alerts: sns.ITopic,
        functions: FunctionFactory,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, id)
        self.table = encrypted_table(
            self, "State", key=key, partition_key="pk", sort_key="sk", ttl_attribute="expires_at"
        )
        self.dead_letters = dead_letter_queue(self, "DeadLetters", key=key)
        self.function = functions.function(
            self,
            "Router",
            handler="functions.route_alert.handler",
            description="Route, group, inhibit and silence alerts; notify SNS, Slack, PagerDuty, Teams",
            environment=env.build(settings, "route_alert", alert_table=self.table, alerts_topic=alerts),
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=2,
        )
        self.table.grant_read_write_data(self.function)
        alerts.grant_publish(self.function)
        self._grant_secrets(settings)
        self.rules = {
            "events": self._rule(
                "Events",
                "Monitor findings, failed runs, rollbacks and retraining decisions become alerts",
                bus=bus,
                pattern=events.EventPattern(
                    source=[EVENT_SOURCE], detail_type=[str(t) for t in ROUTED_EVENTS]
                ),
            ),
            "alarms": self._rule(
                "Alarms",
                "State changes of the platform's CloudWatch alarms become alerts",
                bus=None,
                pattern=events.EventPattern(
                    source=[CLOUDWATCH_SOURCE],
                    detail_type=[ALARM_STATE_CHANGE],
                    detail={"alarmName": [{"prefix": settings.prefix}]},
                ),
            ),
            "flush": self._rule(
                "Flush",
                "Send the notifications whose group wait, group interval or repeat interval elapsed",
                bus=None,
                schedule=events.Schedule.rate(cdk.Duration.minutes(flush_minutes(settings))),
            ),
        }

    def _rule(
        self,
        id: str,
        description: str,
        *,
        bus: events.IEventBus | None,
        pattern: events.EventPattern | None = None,
        schedule: events.Schedule | None = None,
    ) -> events.Rule:
        rule = events.Rule(
            self, id, description=description, event_bus=bus, event_pattern=pattern, schedule=schedule
        )
        rule.add_target(
            targets.LambdaFunction(
                self.function,
                dead_letter_queue=self.dead_letters,
                retry_attempts=3,
                max_event_age=cdk.Duration.hours(2),
            )
        )
        return rule

    def _grant_secrets(self, settings: Settings) -> None:
        """Read access to each channel's secret, by name (the operator creates them: README)."""
        for channel in settings.alerts.channels:
            if channel.secret is None:
                continue
            secret = secretsmanager.Secret.from_secret_name_v2(self, f"Secret-{channel.name}", channel.secret)
            secret.grant_read(self.function)
        acknowledge(
            self.function.role or self.function,
            *iam5_actions("kms:GenerateDataKey*", "kms:ReEncrypt*"),
            reason="The wildcards come from the CDK's grants on the encrypted topic and state table.",
        )
