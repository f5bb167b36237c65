"""What the alert table holds, as typed records, and their DynamoDB attribute form.

Times are stored as fixed-width ISO strings (UTC, microseconds always present) so that conditions such
as ``changed_at <= :t`` compare them correctly as strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from mlcycle.alerting.model import Alert, Notification
from mlcycle.alerting.rules import Matcher, Silence

DeliveryState = Literal["sending", "sent", "failed", "given_up"]


def stamp(at: datetime) -> str:
    """A time as a fixed-width, sortable UTC string."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def epoch(at: datetime) -> str:
    """A DynamoDB TTL value (seconds since the epoch, as a number string)."""
    return str(int(at.timestamp()))


def s(value: str) -> dict[str, Any]:
    return {"S": value}


def n(value: int) -> dict[str, Any]:
    return {"N": str(value)}


def string_map(values: Mapping[str, str]) -> dict[str, Any]:
    return {"M": {k: s(str(v)) for k, v in values.items()}}


def _strings(item: Mapping[str, Any], name: str) -> dict[str, str]:
    return {k: v["S"] for k, v in item.get(name, {}).get("M", {}).items()}


def _opt(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


@dataclass(frozen=True)
class AlertRecord:
    """An alert as kept: the alert, its thread (notes), who acknowledged or resolved it by hand."""

    alert: Alert
    changed_at: datetime
    last_seen: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return self.alert.fingerprint

    @property
    def acked(self) -> bool:
        return self.acked_by is not None


def alert_record(item: Mapping[str, Any]) -> AlertRecord:
    notes = [json.loads(v["S"]) for v in item.get("notes", {}).get("M", {}).values()]
    alert = Alert(
        fingerprint=item["sk"]["S"],
        status="firing" if item["status"]["S"] == "firing" else "resolved",
        labels=_strings(item, "labels"),
        summary=item["summary"]["S"],
        description=item["description"]["S"],
        starts_at=datetime.fromisoformat(item["starts_at"]["S"]),
        ends_at=parse_time(_opt(item, "ends_at")),
        details=json.loads(item.get("details", s("[]"))["S"]),
        links=_strings(item, "links"),
        event_id=_opt(item, "last_event") or "",
    )
    return AlertRecord(
        alert=alert,
        changed_at=datetime.fromisoformat(item["changed_at"]["S"]),
        last_seen=parse_time(_opt(item, "last_seen")),
        acked_by=_opt(item, "acked_by"),
        acked_at=parse_time(_opt(item, "acked_at")),
        resolved_by=_opt(item, "resolved_by"),
        resolution=_opt(item, "resolution"),
        notes=sorted(notes, key=lambda note: str(note.get("at", ""))),
    )


@dataclass(frozen=True)
class GroupRecord:
    """A notification group (one route, one set of ``group_by`` values) and what it last notified:
    ``notified`` maps each alert told about to the status it was told (``firing``/``resolved``)."""

    key: str
    labels: dict[str, str]
    channels: tuple[str, ...]
    members: frozenset[str]
    version: int
    first_seen: datetime | None = None
    last_notified: datetime | None = None
    notified: dict[str, str] = field(default_factory=dict)

    @property
    def notified_firing(self) -> frozenset[str]:
        return frozenset(fp for fp, status in self.notified.items() if status == "firing")


def group_record(item: Mapping[str, Any]) -> GroupRecord:
    return GroupRecord(
        key=item["sk"]["S"],
        labels=json.loads(item.get("group_labels", s("{}"))["S"]),
        channels=tuple(v["S"] for v in item.get("channels", {}).get("L", [])),
        members=frozenset(item.get("members", {}).get("SS", [])),
        version=int(item.get("version", n(0))["N"]),
        first_seen=parse_time(_opt(item, "first_seen")),
        last_notified=parse_time(_opt(item, "last_notified")),
        notified=json.loads(item.get("notified", s("{}"))["S"]),
    )


@dataclass(frozen=True)
class DeliveryRecord:
    """One notification's delivery to one channel: ``tries`` counts the flushes that attempted it,
    ``attempts`` the HTTP/SNS attempts in all."""

    notification_id: str
    channel: str
    group_key: str
    state: DeliveryState
    tries: int
    attempts: int
    updated_at: datetime
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "sent"


def delivery_record(item: Mapping[str, Any]) -> DeliveryRecord:
    state: Any = item["state"]["S"]
    status = item.get("http_status", {}).get("N")
    return DeliveryRecord(
        notification_id=item["notification_id"]["S"],
        channel=item["channel"]["S"],
        group_key=item["group_key"]["S"],
        state=state,
        tries=int(item["tries"]["N"]),
        attempts=int(item.get("attempts", n(0))["N"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        status=int(status) if status is not None else None,
        error=_opt(item, "error_text"),
    )


def silence_item(silence: Silence) -> dict[str, Any]:
    return {
        "matchers": s(json.dumps([str(m) for m in silence.matchers])),
        "starts_at": s(stamp(silence.starts_at)),
        "ends_at": s(stamp(silence.ends_at)),
        "comment": s(silence.comment),
        "author": s(silence.author),
        "created_at": s(stamp(silence.created_at or silence.starts_at)),
    }


def silence_record(item: Mapping[str, Any]) -> Silence:
    created = _opt(item, "created_at")
    return Silence(
        id=item["sk"]["S"],
        matchers=tuple(Matcher.parse(m) for m in json.loads(item["matchers"]["S"])),
        starts_at=datetime.fromisoformat(item["starts_at"]["S"]),
        ends_at=datetime.fromisoformat(item["ends_at"]["S"]),
        comment=item["comment"]["S"],
        author=item["author"]["S"],
        created_at=parse_time(created),
    )


def alert_to_json(alert: Alert) -> dict[str, Any]:
    plain = asdict(alert)
    plain["starts_at"] = stamp(alert.starts_at)
    plain["ends_at"] = stamp(alert.ends_at) if alert.ends_at else None
    return plain


def alert_from_json(plain: Mapping[str, Any]) -> Alert:
    fields = dict(plain)
    fields["starts_at"] = datetime.fromisoformat(plain["starts_at"])
    fields["ends_at"] = parse_time(plain.get("ends_at"))
    return Alert(**fields)


def notification_body(notification: Notification) -> str:
    """A notification's content (what every channel of it is sent), to resend it unchanged on retry."""
    return json.dumps(
        {
            "group_key": notification.group_key,
            "group_labels": notification.group_labels,
            "alerts": [alert_to_json(a) for a in notification.alerts],
            "repeat": notification.repeat,
        },
        default=str,
    )


def notification_from_body(body: str, channel: str) -> Notification:
    plain = json.loads(body)
    return Notification(
        channel=channel,
        group_key=plain["group_key"],
        group_labels=plain["group_labels"],
        alerts=tuple(alert_from_json(a) for a in plain["alerts"]),
        repeat=bool(plain.get("repeat")),
    )
