"""Events mlcycle puts on its bus. One source, one detail-type per fact."""

from __future__ import annotations

import json
from typing import Any

SOURCE = "mlcycle"

DATASET_VALIDATED = "DatasetValidated"
DATASET_QUARANTINED = "DatasetQuarantined"
MODEL_REGISTERED = "ModelRegistered"
MODEL_DEPLOYED = "ModelDeployed"
#: A registered version waits for a human: it did not beat the champion by the approval margin.
MODEL_REVIEW_REQUESTED = "ModelReviewRequested"
#: The training pipeline stopped; the detail names its failure report in S3.
TRAINING_FAILED = "TrainingFailed"


class EventPublishError(RuntimeError):
    pass


def publish(events: Any, bus: str, detail_type: str, detail: dict[str, Any]) -> None:
    """Put one event; a rejected entry raises, since a lost event breaks the cycle silently."""
    response = events.put_events(
        Entries=[
            {
                "Source": SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(detail, default=str),
                "EventBusName": bus,
            }
        ]
    )
    if response.get("FailedEntryCount"):
        raise EventPublishError(f"{detail_type} was rejected: {response['Entries']}")
