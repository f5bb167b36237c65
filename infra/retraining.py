"""Automatic retraining: our event bus, and the retraining controller every trigger goes through.

No rule starts the training state machine directly: monitor findings (and their recoveries), validated
uploads and the schedule all reach the controller (functions/retraining_controller.py,
mlcycle.retraining), which applies the guards (single flight, cooldown, new labelled rows, a daily
budget) before it starts a run with the trigger recorded in the run's input and lineage.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import env
from infra.data_lake import DataLake
from infra.functions import FunctionFactory
from infra.gates import acknowledge, iam5_actions, iam5_arn, iam5_resource
from infra.lineage import Lineage
from infra.queues import dead_letter_queue
from infra.tables import encrypted_table
from mlcycle.config import Settings
from mlcycle.names import EVENT_SOURCE, EventType
from mlcycle.retraining.controller import RECENT_WINDOWS_PREFIX

#: The schedule the (then disabled) rule carries when settings name none.
DEFAULT_SCHEDULE = "rate(7 days)"


class EventBus(Construct):
    """The custom bus ``{prefix}-bus`` our functions put events on. Attribute: ``bus``."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings) -> None:
        super().__init__(scope, id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=f"{settings.prefix}-bus")


#: What the controller hears on our bus: findings that may ask for a run, their recoveries (which withdraw
#: the request), and new labelled rows (validated uploads, or, when feature views feed the training sets,
#: uploads whose features are in; a trigger of their own with on_new_data).
CONTROLLER_EVENTS = (
    EventType.DATASET_VALIDATED,
    EventType.FEATURES_INGESTED,
    EventType.DRIFT_DETECTED,
    EventType.DRIFT_RECOVERED,
    EventType.MODEL_QUALITY_DEGRADED,
    EventType.MODEL_QUALITY_RECOVERED,
    EventType.KPI_BREACHED,
    EventType.KPI_RECOVERED,
    EventType.DATA_QUALITY_VIOLATED,
    EventType.DATA_QUALITY_RECOVERED,
    EventType.BIAS_DETECTED,
    EventType.BIAS_RECOVERED,
)


class Retraining(Construct):
    """The retraining controller and its rules.

    * ``triggers``: findings, recoveries and validated uploads on our bus go to the controller;
    * ``schedule``: a periodic trigger (enabled when ``settings.retraining.schedule`` names one).

    Attributes: ``controller`` (the function), ``table`` (its lock, runs, pending triggers and decisions),
    ``triggers``, ``schedule`` (rules), ``dead_letters`` (events that could not be delivered or handled).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        bus: events.IEventBus,
        state_machine: sfn.IStateMachine,
        functions: FunctionFactory,
        data_lake: DataLake,
        lineage: Lineage,
        monitor_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, id)
        key = data_lake.key
        self.dead_letters = dead_letter_queue(self, "DeadLetters", key=key)
        self.table = encrypted_table(
            self, "State", key=key, partition_key="pk", sort_key="sk", ttl_attribute="expires_at"
        )
        self.controller = functions.function(
            self,
            "Controller",
            handler="functions.retraining_controller.handler",
            description="Guarded retraining: single flight, cooldown, new labelled rows, a daily budget",
            environment=env.build(
                settings,
                "retraining_controller",
                retraining_table=self.table,
                training_state_machine=state_machine,
                bus=bus,
                lineage_table=lineage.table,
                monitor_table=monitor_table,
                monitoring=data_lake.monitoring,
                artifacts=data_lake.artifacts,
            ),
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=2,
        )
        self._grant(state_machine, data_lake, lineage, monitor_table, bus)
        self.triggers = events.Rule(
            self,
            "Triggers",
            description="Findings, recoveries and validated uploads go to the retraining controller",
            event_bus=bus,
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE], detail_type=[str(t) for t in CONTROLLER_EVENTS]
            ),
        )
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Periodic retraining (enabled when settings name a schedule)",
            schedule=events.Schedule.expression(settings.retraining.schedule or DEFAULT_SCHEDULE),
            enabled=settings.retraining.schedule is not None,
        )
        for rule in (self.triggers, self.schedule):
            rule.add_target(
                targets.LambdaFunction(
                    self.controller,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=3,
                    max_event_age=cdk.Duration.hours(2),
                )
            )

    def _grant(
        self,
        state_machine: sfn.IStateMachine,
        data_lake: DataLake,
        lineage: Lineage,
        monitor_table: dynamodb.ITable,
        bus: events.IEventBus,
    ) -> None:
        fn = self.controller
        self.table.grant_read_write_data(fn)
        state_machine.grant_start_execution(fn)
        # Single flight: the machine's running executions, and the one the lock names.
        state_machine.grant(fn, "states:ListExecutions")
        state_machine.grant_execution(fn, "states:DescribeExecution")
        lineage.grant_record(fn)
        monitor_table.grant_read_data(fn)
        data_lake.monitoring.grant_read(fn)  # the recent windows' capture and labels
        # The recent labelled window the challenger is judged on.
        data_lake.artifacts.grant_put(fn, f"{RECENT_WINDOWS_PREFIX}*")
        bus.grant_put_events_to(fn)
        acknowledge(
            fn.role or fn,
            *iam5_actions(
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
                "s3:GetObject*",
                "s3:GetBucket*",
                "s3:List*",
                "s3:Abort*",
            ),
            iam5_resource(data_lake.monitoring),
            iam5_resource(data_lake.artifacts, f"/{RECENT_WINDOWS_PREFIX}*"),
            _executions_finding(state_machine),
            reason="The wildcards come from the CDK's grants: capture and labels are read under keys named "
            "at run time, the recent window is written under a run's name, and the state machine's "
            "executions (whose names are not known in advance) are read for single flight.",
        )


def _executions_finding(state_machine: sfn.IStateMachine) -> str:
    """The IAM5 finding id of ``grant_execution``: every execution of the machine (``execution:NAME:*``,
    the name taken from the machine's ARN), since execution names are chosen at run time."""
    logical_id = cdk.Stack.of(state_machine).get_logical_id(
        state_machine.node.default_child  # type: ignore[arg-type]
    )
    name = f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{logical_id}"}}]}}]}}'
    return iam5_arn(state_machine, "states", f"execution:{name}:*")
