"""The alerting vocabulary every part of mlcycle.alerting shares: an alert, a notification of a group of
alerts to one channel, and the outcome of delivering it.

The model is Alertmanager's: an event becomes an :class:`Alert` identified by its fingerprint (its name
plus its labels, so the same problem on the same endpoint is the same alert however often it is
reported); alerts with equal ``group_by`` labels are notified together as one :class:`Notification` per
channel; a channel's delivery ends in a :class:`DeliveryResult`, kept whether or not it succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

AlertStatus = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Alert:
    """One problem as the router sees it (from a monitor event, an alarm change, a failed run...).

    ``labels`` always holds ``alertname``, ``category`` (``model``, ``system`` or ``pipeline``) and
    ``severity`` (``critical``, ``error``, ``warning``, ``info``), and ``endpoint`` / ``model_version``
    where they apply. ``fingerprint`` is a stable hash of the alert name and the identifying labels
    (not the severity, not the model version: a recovery reported by the next model version resolves the
    alert its predecessor raised).
    """

    fingerprint: str
    status: AlertStatus
    labels: dict[str, str]
    #: One line: what is wrong, e.g. "Drift on mlcycle-dev-endpoint (model v3)".
    summary: str
    #: What crossed which threshold, in a sentence or two.
    description: str
    #: When the problem started / ended (the event's time).
    starts_at: datetime
    ends_at: datetime | None = None
    #: The worst features (or metrics) with their scores and thresholds, as the monitors report them.
    details: list[dict[str, Any]] = field(default_factory=list)
    #: Named links: ``report`` (the window's HTML report), ``runbook``, ``execution``...
    links: dict[str, str] = field(default_factory=dict)
    #: The id of the event this alert came from (EventBridge's ``id``): a redelivery carries the same.
    event_id: str = ""

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def severity(self) -> str:
        return self.labels["severity"]


@dataclass(frozen=True)
class Notification:
    """What one channel is told about one group at one time: its firing and resolved alerts."""

    channel: str
    #: The group's key: the route and the values of its ``group_by`` labels.
    group_key: str
    #: The group's labels (the ``group_by`` ones), shown as its title.
    group_labels: dict[str, str]
    alerts: tuple[Alert, ...]
    #: True when nothing changed since the last notification and the repeat interval elapsed.
    repeat: bool = False

    @property
    def status(self) -> str:
        """``firing`` while any alert of the group fires, else ``resolved``."""
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == "firing")

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == "resolved")


@dataclass(frozen=True)
class DeliveryResult:
    """How delivering one notification to one channel went (kept in the alert state either way)."""

    channel: str
    ok: bool
    attempts: int
    #: The last HTTP status (or None for SNS, or when no answer came).
    status: int | None = None
    error: str | None = None
