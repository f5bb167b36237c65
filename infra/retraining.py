"""Automatic retraining: our event bus and the rules that start the training state machine."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.queues import dead_letter_queue
from mlcycle.config import Settings
from mlcycle.names import EVENT_SOURCE, EventType

#: The schedule the (then disabled) rule carries when settings name none.
DEFAULT_SCHEDULE = "rate(7 days)"


class EventBus(Construct):
    """The custom bus ``{prefix}-bus`` our functions put events on. Attribute: ``bus``."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings) -> None:
        super().__init__(scope, id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=f"{settings.prefix}-bus")


class Retraining(Construct):
    """Rules that start the training pipeline.

    * ``new_data``: a ``DatasetValidated`` event on our bus starts a training run for that dataset
      (enabled by ``settings.retraining.on_new_data``).
    * ``schedule``: a periodic run (enabled when ``settings.retraining.schedule`` names one).

    Attributes: ``new_data``, ``schedule`` (rules), ``role`` (the role EventBridge starts executions with),
    ``dead_letters`` (events EventBridge could not deliver).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        bus: events.IEventBus,
        state_machine: sfn.IStateMachine,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, id)
        self.dead_letters = dead_letter_queue(self, "DeadLetters", key=key)
        dead_letters = self.dead_letters
        self.role = iam.Role(self, "StartRole", assumed_by=iam.ServicePrincipal("events.amazonaws.com"))
        self.new_data = events.Rule(
            self,
            "NewData",
            description="New validated data starts a training run for its dataset",
            event_bus=bus,
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE], detail_type=[EventType.DATASET_VALIDATED]
            ),
            enabled=settings.retraining.on_new_data,
        )
        self.new_data.add_target(
            self._target(
                state_machine,
                dead_letters,
                events.RuleTargetInput.from_object(
                    {"dataset": events.EventField.from_path("$.detail.dataset")}
                ),
            )
        )
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Periodic retraining (enabled when settings name a schedule)",
            schedule=events.Schedule.expression(settings.retraining.schedule or DEFAULT_SCHEDULE),
            enabled=settings.retraining.schedule is not None,
        )
        self.schedule.add_target(
            self._target(state_machine, dead_letters, events.RuleTargetInput.from_object({}))
        )

    def _target(
        self, state_machine: sfn.IStateMachine, dlq: sqs.IQueue, payload: events.RuleTargetInput
    ) -> targets.SfnStateMachine:
        return targets.SfnStateMachine(
            state_machine,
            input=payload,
            role=self.role,
            dead_letter_queue=dlq,
            retry_attempts=3,
            max_event_age=cdk.Duration.hours(2),
        )
