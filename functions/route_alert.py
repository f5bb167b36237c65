"""EventBridge -> the alert router (mlcycle.alerting.router).

Our bus's monitor findings and recoveries, failed runs, rollbacks and retraining decisions, and the
default bus's state changes of our CloudWatch alarms, each become alert state; a scheduled event flushes
the groups whose timers elapsed. A delivery that failed (after the deliverer's own retries) fails the
invocation, naming its channels: Lambda retries it (the redelivered event is a duplicate, whose
invocation retries the failed deliveries) and at last sends it to the dead-letter queue. The state
keeps every delivery, so a channel that took a notification is never sent it again.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, runtime
from mlcycle.alerting.delivery import Deliverer
from mlcycle.alerting.router import DeliveryFailedError, FlushResult, ReceiveResult, Router
from mlcycle.alerting.state import AlertStore

logger = Logger()
tracer = Tracer()

#: EventBridge's scheduled rules put events of this source and detail type.
SCHEDULE_SOURCE = "aws.events"
SCHEDULED_EVENT = "Scheduled Event"


class Environment(runtime.FunctionEnvironment):
    handler = "functions.route_alert"
    alert_table: str
    alerts_topic: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings, env = runtime.settings(), runtime.environment(Environment)
    deliverer = Deliverer(settings.alerts, sns=aws.client("sns"), topic_arn=env.alerts_topic)
    router = Router(settings, AlertStore(env.alert_table, aws.client("dynamodb")), deliverer.deliver)
    received: ReceiveResult | None = None
    if is_schedule(event):
        flushed = router.flush()
    else:
        received = router.receive(event)
        flushed = received.flushed or FlushResult()
        if received.duplicate:
            # Lambda's retry of an invocation whose delivery failed: try the failed deliveries again.
            flushed = flushed.merge(router.retry_failed())
    summary = _summary(received, flushed)
    logger.info("alert router", extra=summary)
    if flushed.failed:
        raise DeliveryFailedError(flushed.failed)
    return summary


def is_schedule(event: dict[str, Any]) -> bool:
    return event.get("source") == SCHEDULE_SOURCE and event.get("detail-type") == SCHEDULED_EVENT


def _summary(received: ReceiveResult | None, flushed: FlushResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sent": [f"{d.notification_id}#{d.channel}" for d in flushed.sent],
        "failed": [f"{d.notification_id}#{d.channel}" for d in flushed.failed],
    }
    if received is not None:
        out |= {
            "event_id": received.event_id,
            "outcome": received.outcome,
            "fingerprint": received.fingerprint,
            "groups": list(received.groups),
        }
    return out
