"""Putting mlcycle's events on its bus. One source, one detail-type per fact (names in mlcycle.names)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlcycle.names import EVENT_SOURCE, EventType

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient


class EventPublishError(RuntimeError):
    pass


def publish(events: EventBridgeClient, bus: str, detail_type: EventType, detail: dict[str, Any]) -> None:
    """Put one event; a rejected entry raises, since a lost event breaks the cycle silently."""
    response = events.put_events(
        Entries=[
            {
                "Source": EVENT_SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(detail, default=str),
                "EventBusName": bus,
            }
        ]
    )
    if response.get("FailedEntryCount"):
        raise EventPublishError(f"{detail_type} was rejected: {response['Entries']}")
