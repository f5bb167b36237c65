"""What each kind of channel is sent for a :class:`Notification`: pure functions, no I/O.

Each renderer answers the JSON (or text) its receiver expects: a Slack incoming webhook's Block Kit
message, PagerDuty Events API v2 events (one per alert, deduplicated by the alert's fingerprint so a
repeat updates the incident instead of opening another), a Teams Adaptive Card, Alertmanager's webhook
document (so any receiver written for Alertmanager works unchanged), and an SNS subject and body for
email and SMS. The receivers' size limits are respected by truncating: a long description must never
cost the whole notification (Slack answers ``invalid_blocks`` to a message over its limits).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlcycle.alerting.model import Alert, Notification

SLACK_HEADER_MAX = 150
SLACK_TEXT_MAX = 3000
SLACK_BLOCKS_MAX = 50
SLACK_BUTTON_TEXT_MAX = 75
PAGERDUTY_SUMMARY_MAX = 1024
#: SNS rejects a subject of 100 characters or more, or with a line break.
SNS_SUBJECT_MAX = 99
SMS_MAX = 140
#: Alerts shown in full on a Teams card (its webhook refuses cards over about 28 KB).
TEAMS_ALERTS_MAX = 10
TEAMS_TEXT_MAX = 2000
TEST_ALERT_NAME = "MlcycleTestNotification"
#: PagerDuty knows these four severities, which are also mlcycle's.
PAGERDUTY_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}
_SLACK_ICON = {"critical": ":red_circle:", "error": ":large_orange_circle:", "warning": ":warning:"}
_NAME_KEYS = ("feature", "metric", "kpi", "segment", "name", "column")
_SCORE_KEYS = ("score", "value", "drop", "rate")
_THRESHOLD_KEYS = ("threshold", "tolerance")
_SHOWN_KEYS = {*_NAME_KEYS, *_SCORE_KEYS, *_THRESHOLD_KEYS, "test", "min", "max"}


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis to show that something was cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def one_line(text: str) -> str:
    """Line breaks and control characters folded into single spaces (subjects, headers, SMS)."""
    return re.sub(r"[\s\x00-\x1f\x7f]+", " ", text).strip()


def title(notification: Notification) -> str:
    """Alertmanager's title: ``[FIRING:2] DriftDetected mlcycle-dev-endpoint`` or ``[RESOLVED] ...``."""
    firing = len(notification.firing)
    state = f"FIRING:{firing}" if firing else "RESOLVED"
    if firing and notification.repeat:
        state += ", still"
    names = notification.group_labels.get("alertname") or ", ".join(
        dict.fromkeys(a.name for a in notification.alerts)
    )
    others = [v for k, v in sorted(notification.group_labels.items()) if k != "alertname"]
    return one_line(" ".join([f"[{state}]", names, *others]))


def detail_text(detail: dict[str, Any]) -> str:
    """One of the worst items a monitor reports, as a line: ``age: ks 0.31 (threshold 0.1)``.

    The monitors report different shapes (a drifted feature's score and threshold, a metric's drop and
    tolerance, a KPI's value and bounds, a feature's violations), so the known keys are read in order
    and whatever else the item holds is appended rather than lost.
    """
    name = next((str(detail[k]) for k in _NAME_KEYS if k in detail), "item")
    parts = [str(detail["test"])] if "test" in detail else []
    parts += [_number(detail[k]) for k in _SCORE_KEYS if k in detail][:1]
    bounds = [f"{k} {_number(detail[k])}" for k in _THRESHOLD_KEYS if k in detail]
    bounds += [f"{k} {_number(detail[k])}" for k in ("min", "max") if detail.get(k) is not None]
    text = f"{name}: {' '.join(parts) or 'breached'}" + (f" ({', '.join(bounds)})" if bounds else "")
    rest = [f"{k}: {_value(v)}" for k, v in detail.items() if k not in _SHOWN_KEYS and v not in (None, "")]
    return "; ".join([text, *rest])


def alert_links(alert: Alert, runbook_url: str | None = None) -> list[tuple[str, str]]:
    """(label, URL) of an alert's links, the report first and the settings' runbook when it has none."""
    links = dict(sorted(alert.links.items(), key=lambda item: item[0] != "report"))
    if runbook_url and "runbook" not in links:
        links["runbook"] = runbook_url
    return [(key.replace("_", " ").capitalize(), url) for key, url in links.items() if url]


def is_web_url(url: str) -> bool:
    """Receivers make buttons only of http(s) links; others (an ``s3://`` report) are shown as text."""
    return url.startswith(("https://", "http://"))


@dataclass(frozen=True)
class SnsMessage:
    """An SNS publication: the email subject, the email body and the shorter SMS text."""

    subject: str
    body: str
    sms: str


# Slack ------------------------------------------------------------------------------------------------


def slack_message(notification: Notification, *, runbook_url: str | None = None) -> dict[str, Any]:
    """A Block Kit message for an incoming webhook, with ``text`` as the notification fallback."""
    heading = title(notification)
    icon = ":rotating_light:" if notification.status == "firing" else ":white_check_mark:"
    blocks: list[dict[str, Any]] = [_plain_block("header", clip(f"{icon} {heading}", SLACK_HEADER_MAX))]
    shown = 0
    for alert in notification.alerts:
        group = [{"type": "divider"}, *_slack_alert(alert, runbook_url)]
        if len(blocks) + len(group) > SLACK_BLOCKS_MAX - 1:
            break
        blocks += group
        shown += 1
    if shown < len(notification.alerts):
        more = f"…and {len(notification.alerts) - shown} more alerts not shown."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    summary = notification.alerts[0].summary if notification.alerts else ""
    return {"text": clip(f"{heading}: {summary}", SLACK_TEXT_MAX), "blocks": blocks}


def _slack_alert(alert: Alert, runbook_url: str | None) -> list[dict[str, Any]]:
    resolved = alert.status == "resolved"
    icon = ":white_check_mark:" if resolved else _SLACK_ICON.get(alert.severity, ":information_source:")
    state = "RESOLVED" if resolved else "FIRING"
    facts = [f"*Severity:* {alert.severity}"] + [
        f"*{label}:* {_escape(alert.labels[key])}"
        for key, label in (("model_version", "Model version"), ("endpoint", "Endpoint"))
        if alert.labels.get(key)
    ]
    lines = [f"{icon} *{state}: {_escape(alert.summary)}*", _escape(alert.description), " · ".join(facts)]
    if alert.details:
        lines += ["*Worst:*", *(f"• {_escape(detail_text(d))}" for d in alert.details[:10])]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": clip("\n".join(lines), SLACK_TEXT_MAX)}}
    ]
    links = alert_links(alert, runbook_url)
    buttons = [_slack_button(label, url) for label, url in links if is_web_url(url) and len(url) <= 3000]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons[:25]})
    others = [f"{label}: `{_escape(url)}`" for label, url in links if not is_web_url(url)]
    if others:
        text = clip(" · ".join(others), SLACK_TEXT_MAX)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
    return blocks


def _slack_button(label: str, url: str) -> dict[str, Any]:
    text = {"type": "plain_text", "text": clip(label, SLACK_BUTTON_TEXT_MAX)}
    return {"type": "button", "text": text, "url": url}


def _plain_block(kind: str, text: str) -> dict[str, Any]:
    return {"type": kind, "text": {"type": "plain_text", "text": text, "emoji": True}}


def _escape(text: str) -> str:
    """Slack's mrkdwn escapes: a ``<`` in a description must not open a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# PagerDuty --------------------------------------------------------------------------------------------


def pagerduty_events(
    notification: Notification, routing_key: str, *, runbook_url: str | None = None
) -> list[dict[str, Any]]:
    """One Events API v2 event per alert: ``trigger`` while firing, ``resolve`` once resolved, both
    with the alert's fingerprint as ``dedup_key`` so PagerDuty keeps one incident per alert."""
    return [_pagerduty_event(alert, notification, routing_key, runbook_url) for alert in notification.alerts]


def _pagerduty_event(
    alert: Alert, notification: Notification, routing_key: str, runbook_url: str | None
) -> dict[str, Any]:
    event: dict[str, Any] = {"routing_key": routing_key, "dedup_key": alert.fingerprint}
    if alert.status == "resolved":
        return {**event, "event_action": "resolve"}
    links = alert_links(alert, runbook_url)
    payload = {
        "summary": clip(one_line(alert.summary), PAGERDUTY_SUMMARY_MAX),
        "source": alert.labels.get("endpoint") or "mlcycle",
        "severity": PAGERDUTY_SEVERITY.get(alert.severity, "warning"),
        "timestamp": rfc3339(alert.starts_at),
        "component": alert.labels.get("model_version") or alert.labels.get("source") or "mlcycle",
        "group": alert.labels.get("category", "mlcycle"),
        "class": alert.name,
        "custom_details": {
            "description": alert.description,
            "worst": [detail_text(d) for d in alert.details],
            "details": alert.details,
            "labels": alert.labels,
            "group_key": notification.group_key,
            **{label.lower(): url for label, url in links if not is_web_url(url)},
        },
    }
    web = [{"href": url, "text": label} for label, url in links if is_web_url(url)]
    return {**event, "event_action": "trigger", "client": "mlcycle", "payload": payload, "links": web}


# Teams ------------------------------------------------------------------------------------------------


def teams_message(notification: Notification, *, runbook_url: str | None = None) -> dict[str, Any]:
    """An Adaptive Card 1.4 in the message envelope Teams' incoming webhooks (and Workflows) accept."""
    firing = notification.status == "firing"
    body: list[dict[str, Any]] = [
        _text_block(
            title(notification), size="Large", weight="Bolder", color="Attention" if firing else "Good"
        )
    ]
    actions: dict[str, dict[str, Any]] = {}
    for alert in notification.alerts[:TEAMS_ALERTS_MAX]:
        body += _teams_alert(alert, runbook_url)
        for label, url in alert_links(alert, runbook_url):
            if is_web_url(url):
                actions.setdefault(url, {"type": "Action.OpenUrl", "title": label, "url": url})
    hidden = len(notification.alerts) - TEAMS_ALERTS_MAX
    if hidden > 0:
        body.append(_text_block(f"…and {hidden} more alerts not shown.", isSubtle=True))
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": list(actions.values())[:6],
        "msteams": {"width": "Full"},
    }
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


def _teams_alert(alert: Alert, runbook_url: str | None) -> list[dict[str, Any]]:
    state = "RESOLVED" if alert.status == "resolved" else "FIRING"
    facts = [("Status", state), ("Severity", alert.severity)]
    facts += [(label, alert.labels[key]) for key, label in _TEAMS_LABELS if alert.labels.get(key)]
    facts += [("Started", rfc3339(alert.starts_at))]
    facts += [(f"Worst {i}", clip(detail_text(d), 300)) for i, d in enumerate(alert.details[:5], start=1)]
    facts += [(label, url) for label, url in alert_links(alert, runbook_url) if not is_web_url(url)]
    return [
        _text_block(f"{state}: {alert.summary}", weight="Bolder", separator=True),
        _text_block(clip(alert.description, TEAMS_TEXT_MAX)),
        {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in facts]},
    ]


_TEAMS_LABELS = (("endpoint", "Endpoint"), ("model_version", "Model version"), ("category", "Category"))


def _text_block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": clip(text, TEAMS_TEXT_MAX), "wrap": True, **style}


# Generic webhook (Alertmanager's document) ------------------------------------------------------------


def webhook_payload(notification: Notification, *, runbook_url: str | None = None) -> dict[str, Any]:
    """Alertmanager's webhook document (version 4), so receivers written for Alertmanager work as-is."""
    alerts = [_webhook_alert(a, runbook_url) for a in notification.alerts]
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": 0,
        "status": notification.status,
        "receiver": notification.channel,
        "groupLabels": dict(notification.group_labels),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": runbook_url or "",
        "alerts": alerts,
    }


def _webhook_alert(alert: Alert, runbook_url: str | None) -> dict[str, Any]:
    annotations = {"summary": alert.summary, "description": alert.description}
    annotations |= {
        f"{label.lower().replace(' ', '_')}_url": url for label, url in alert_links(alert, runbook_url)
    }
    if alert.details:
        annotations["details"] = json.dumps(alert.details, default=str)
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": annotations,
        "startsAt": rfc3339(alert.starts_at),
        # Alertmanager's "no end yet": the zero time.
        "endsAt": rfc3339(alert.ends_at) if alert.ends_at else "0001-01-01T00:00:00Z",
        "generatorURL": alert.links.get("report", ""),
        "fingerprint": alert.fingerprint,
    }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}


# SNS (email, SMS) -------------------------------------------------------------------------------------


def sns_message(notification: Notification, *, runbook_url: str | None = None) -> SnsMessage:
    """A subject SNS accepts (under 100 characters, one line), a plain-text body, and a short SMS."""
    heading = title(notification)
    lines = [heading, ""]
    for alert in notification.alerts:
        lines += _text_alert(alert, runbook_url)
    first = notification.alerts[0].summary if notification.alerts else ""
    return SnsMessage(
        subject=clip(heading, SNS_SUBJECT_MAX),
        body="\n".join(lines).rstrip() + "\n",
        sms=clip(one_line(f"{heading}: {first}"), SMS_MAX),
    )


def _text_alert(alert: Alert, runbook_url: str | None) -> list[str]:
    state = "RESOLVED" if alert.status == "resolved" else "FIRING"
    facts = [f"severity: {alert.severity}"] + [
        f"{key.replace('_', ' ')}: {alert.labels[key]}"
        for key in ("endpoint", "model_version")
        if key in alert.labels
    ]
    lines = [f"[{state}] {alert.summary}", "  " + " | ".join(facts), f"  {alert.description}"]
    if alert.details:
        lines += ["  Worst:", *(f"    - {detail_text(d)}" for d in alert.details)]
    lines += [f"  {label}: {url}" for label, url in alert_links(alert, runbook_url)]
    lines.append(f"  Started: {rfc3339(alert.starts_at)}")
    if alert.ends_at:
        lines.append(f"  Ended: {rfc3339(alert.ends_at)}")
    return [*lines, ""]


# Test notification ------------------------------------------------------------------------------------


def test_notification(channel_name: str, *, now: datetime | None = None) -> Notification:
    """A harmless firing notification for ``mlcycle alerts test CHANNEL``: severity ``info``, and a fixed
    fingerprint per channel, so repeated tests update one PagerDuty incident instead of opening many."""
    started = now or datetime.now(UTC)
    labels = {"alertname": TEST_ALERT_NAME, "category": "pipeline", "severity": "info", "source": "mlcycle"}
    alert = Alert(
        fingerprint=hashlib.sha256(f"{TEST_ALERT_NAME}/{channel_name}".encode()).hexdigest()[:16],
        status="firing",
        labels=labels,
        summary=f"Test notification for alert channel {channel_name!r}",
        description=(
            "Sent by `mlcycle alerts test`: this channel receives mlcycle's alerts. Nothing is wrong; "
            "no action is needed."
        ),
        starts_at=started,
    )
    return Notification(
        channel=channel_name,
        group_key=f"test/{channel_name}",
        group_labels={"alertname": TEST_ALERT_NAME},
        alerts=(alert,),
    )


test_notification.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, whatever its name


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z`` (a naive time is taken as UTC, as mlcycle's event times are)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_number(v) for v in value)
    return _number(value)
