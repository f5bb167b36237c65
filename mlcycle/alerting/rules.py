"""Alertmanager's rules, as pure functions of an alert's labels: which routes (and so channels) it takes,
which group it joins on each, whether a firing alert inhibits it, and whether a silence mutes it.

Kept free of state and I/O so the router decides with them and the unit tests pin them down.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlcycle.alert_settings import AlertChannels, AlertGrouping, InhibitRule
from mlcycle.alerting.model import Alert

#: The route key of alerts routed by no rule (no routes configured): every channel.
DEFAULT_ROUTE = "default"


@dataclass(frozen=True)
class Matcher:
    """``label=value`` (exact) or ``label=~regex`` (the whole value must match), as in amtool; a label an
    alert lacks reads as the empty string."""

    label: str
    value: str
    regex: bool = False

    @classmethod
    def parse(cls, text: str) -> Matcher:
        label, sep, value = text.partition("=")
        if not sep or not label.strip():
            raise ValueError(f"a matcher reads label=value or label=~regex, not {text!r}")
        if value.startswith("~"):
            value = value[1:]
            re.compile(value)
            return cls(label.strip(), value, regex=True)
        return cls(label.strip(), value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        return re.fullmatch(self.value, actual) is not None if self.regex else actual == self.value

    def __str__(self) -> str:
        return f"{self.label}={'~' if self.regex else ''}{self.value}"


def matchers(spec: Mapping[str, str] | Iterable[Matcher | str]) -> tuple[Matcher, ...]:
    """Matchers from a mapping (exact values; a value starting with ``~`` is a regex) or from strings."""
    if isinstance(spec, Mapping):
        return tuple(Matcher.parse(f"{label}={value}") for label, value in spec.items())
    return tuple(m if isinstance(m, Matcher) else Matcher.parse(m) for m in spec)


@dataclass(frozen=True)
class Silence:
    """Mutes the alerts its matchers all match, from ``starts_at`` until ``ends_at``."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    comment: str
    author: str
    created_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class Route:
    """A route an alert took: its key (its index in ``alerts.routes``, or ``default``) and channels."""

    key: str
    channels: tuple[str, ...]


def label_matches(spec: Mapping[Any, Sequence[str]], labels: Mapping[str, str]) -> bool:
    """A settings matcher (label -> accepted values): every label must hold one of its values."""
    return all(labels.get(label, "") in values for label, values in spec.items())


def routes_for(labels: Mapping[str, str], alerts: AlertChannels) -> list[Route]:
    """The routes an alert takes: the first match, and the next ones while a match says continue. No
    routes configured: every channel. Routes configured but none matches: none (the alert is kept, and
    listed, but notifies nobody), as a route list is the operator's explicit choice."""
    if not alerts.routes:
        return [Route(DEFAULT_ROUTE, tuple(c.name for c in alerts.channels))]
    taken = []
    for index, route in enumerate(alerts.routes):
        if label_matches(route.match, labels):
            taken.append(Route(str(index), route.channels))
            if not route.continue_matching:
                break
    return taken


def group_labels(labels: Mapping[str, str], grouping: AlertGrouping) -> dict[str, str]:
    return {label: labels.get(label, "") for label in grouping.group_by}


def group_key(route: Route, labels: Mapping[str, str], grouping: AlertGrouping) -> str:
    """One group per route and ``group_by`` values: its alerts are notified together."""
    return f"{route.key}:{json.dumps(group_labels(labels, grouping), sort_keys=True, separators=(',', ':'))}"


def inhibits(rule: InhibitRule, source: Alert, target: Alert) -> bool:
    """A firing ``source`` alert inhibits ``target`` under ``rule`` (never itself)."""
    return (
        source.status == "firing"
        and source.fingerprint != target.fingerprint
        and label_matches(rule.source, source.labels)
        and label_matches(rule.target, target.labels)
        and all(source.labels.get(label, "") == target.labels.get(label, "") for label in rule.equal)
    )


def inhibited(target: Alert, alerts: Iterable[Alert], rules: Sequence[InhibitRule]) -> Alert | None:
    """The firing alert that inhibits ``target``, or None."""
    for source in alerts:
        if any(inhibits(rule, source, target) for rule in rules):
            return source
    return None


def silenced(labels: Mapping[str, str], silences: Iterable[Silence], now: datetime) -> Silence | None:
    """The active silence that mutes an alert with these labels, or None."""
    return next((s for s in silences if s.active(now) and s.matches(labels)), None)
