"""Alerting settings of a deployment (``[alerts]`` in the settings): channels, routes, grouping,
inhibition and delivery, which :mod:`mlcycle.alerting` carries out. :class:`mlcycle.config.Settings`
holds them.

Kept apart from :mod:`mlcycle.config` as :mod:`mlcycle.security` is: the alerting vocabulary in one place;
like the rest of the settings, nothing here reads the environment or calls AWS.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ChannelKind = Literal["sns", "slack", "pagerduty", "teams", "webhook"]
#: The labels an alert carries and routes, groups, silences and inhibitions match on.
AlertLabel = Literal["alertname", "category", "severity", "endpoint", "model_version", "source"]
Severity = Literal["critical", "error", "warning", "info"]


class AlertChannel(_Model):
    """Where notifications go. ``sns``: the alerts topic (its email and SMS subscribers, ``alerts.emails``
    and ``alerts.phone_numbers``). ``slack``, ``teams``, ``webhook``: an incoming webhook whose URL is the
    value of the Secrets Manager secret ``secret``. ``pagerduty``: the Events API v2, with the routing key
    as the secret's value (or a JSON ``{"routing_key": ..., "events_url": ...}``). Secret values are read
    at run time (cached) and never appear in the template, the environment or the logs."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")]
    kind: ChannelKind
    #: Name of the Secrets Manager secret (every kind but ``sns``).
    secret: str | None = None
    #: Send a notification when the alerts of a group resolve.
    send_resolved: bool = True

    @model_validator(mode="after")
    def _secret_when_needed(self) -> AlertChannel:
        if self.kind != "sns" and not self.secret:
            raise ValueError(f"alert channel {self.name!r} ({self.kind}) needs a secret")
        return self


class AlertRoute(_Model):
    """Alerts whose labels match every matcher (label -> accepted values; none matches all) go to
    ``channels``. Routes are tried in order; the first match wins unless it says ``continue_matching``."""

    match: dict[AlertLabel, tuple[str, ...]] = Field(default_factory=dict)
    channels: Annotated[tuple[str, ...], Field(min_length=1)]
    continue_matching: bool = False


class InhibitRule(_Model):
    """While an alert matching ``source`` fires, alerts matching ``target`` with the same ``equal`` labels
    are not notified (Alertmanager's inhibition). The default: an endpoint that is down (a critical system
    alarm) silences the drift and quality alerts of that endpoint."""

    source: dict[AlertLabel, tuple[str, ...]]
    target: dict[AlertLabel, tuple[str, ...]]
    equal: tuple[AlertLabel, ...] = ("endpoint",)


class AlertGrouping(_Model):
    """Alertmanager's timers: alerts with equal ``group_by`` labels make one notification; the first waits
    ``group_wait_seconds`` for its peers, later changes go out at most every ``group_interval_seconds``,
    and a group still firing is repeated every ``repeat_interval_seconds``."""

    group_by: tuple[AlertLabel, ...] = ("alertname", "endpoint")
    group_wait_seconds: Annotated[int, Field(ge=0, le=3600)] = 30
    group_interval_seconds: Annotated[int, Field(ge=0, le=86400)] = 300
    repeat_interval_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = 4 * 3600


class AlertChannels(_Model):
    """Alerting: channels, routes, grouping, inhibition and delivery (mlcycle.alerting)."""

    emails: tuple[str, ...] = ()
    #: Phone numbers (E.164) subscribed to the alerts topic by SMS.
    phone_numbers: tuple[str, ...] = ()
    channels: tuple[AlertChannel, ...] = (AlertChannel(name="email", kind="sns"),)
    #: No route: every alert goes to every channel.
    routes: tuple[AlertRoute, ...] = ()
    grouping: AlertGrouping = AlertGrouping()
    inhibit: tuple[InhibitRule, ...] = (
        InhibitRule(
            source={"category": ("system",), "severity": ("critical",)},
            target={"category": ("model",)},
        ),
    )
    #: Severity per alert name, over the defaults (mlcycle.alerting.alerts.DEFAULT_SEVERITY).
    severities: dict[str, Severity] = Field(default_factory=dict)
    #: Linked from every notification (Slack, Teams, PagerDuty) as the runbook.
    runbook_url: str | None = None
    #: Delivery attempts per notification (with exponential backoff) before it is kept as failed.
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 4

    @model_validator(mode="after")
    def _routes_name_channels(self) -> AlertChannels:
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"alert channel names must be unique: {names}")
        for route in self.routes:
            unknown = set(route.channels) - set(names)
            if unknown:
                raise ValueError(f"alert route names unknown channels {sorted(unknown)} (known: {names})")
        return self

    def channel(self, name: str) -> AlertChannel:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(f"no alert channel {name!r} (known: {[c.name for c in self.channels]})")
