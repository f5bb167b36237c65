"""What each channel kind is sent for a notification (mlcycle.alerting.channels): structure, the
receivers' limits, resolved wording, PagerDuty's dedup keys and severities, Alertmanager's fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from mlcycle.alerting import channels
from mlcycle.alerting.model import Alert, Notification

STARTED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ENDED = datetime(2025, 3, 1, 13, 30, tzinfo=UTC)
REPORT = "https://reports.example.com/windows/42/report.html"
RUNBOOK = "https://wiki.example.com/runbooks/drift"
DRIFTED = [
    {"feature": "age", "test": "ks", "score": 0.3141592, "threshold": 0.1, "reason": "shifted right"},
    {"feature": "income", "test": "psi", "score": 0.25, "threshold": 0.2},
]


def alert(
    fingerprint: str = "fp-drift-1",
    *,
    status: str = "firing",
    severity: str = "warning",
    summary: str = "Drift on mlcycle-dev-endpoint (model v3)",
    description: str = "2 of 5 features drifted (share 0.4 > 0.3).",
    details: list[dict[str, Any]] | None = None,
    links: dict[str, str] | None = None,
    name: str = "DriftDetected",
) -> Alert:
    labels = {
        "alertname": name,
        "category": "model",
        "severity": severity,
        "endpoint": "mlcycle-dev-endpoint",
        "model_version": "3",
    }
    return Alert(
        fingerprint=fingerprint,
        status=status,  # type: ignore[arg-type]
        labels=labels,
        summary=summary,
        description=description,
        starts_at=STARTED,
        ends_at=ENDED if status == "resolved" else None,
        details=DRIFTED if details is None else details,
        links={"report": REPORT} if links is None else links,
    )


def notify(*alerts: Alert, repeat: bool = False) -> Notification:
    return Notification(
        channel="ops",
        group_key='{}:{alertname="DriftDetected", endpoint="mlcycle-dev-endpoint"}',
        group_labels={"alertname": "DriftDetected", "endpoint": "mlcycle-dev-endpoint"},
        alerts=alerts,
        repeat=repeat,
    )


def texts(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# Common ------------------------------------------------------------------------------------------------


def test_title_counts_firing_alerts_and_says_resolved() -> None:
    assert channels.title(notify(alert(), alert("fp2"))) == "[FIRING:2] DriftDetected mlcycle-dev-endpoint"
    assert channels.title(notify(alert(status="resolved"))) == "[RESOLVED] DriftDetected mlcycle-dev-endpoint"
    assert channels.title(notify(alert(), repeat=True)).startswith("[FIRING:1, still]")


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        (DRIFTED[0], "age: ks 0.3142 (threshold 0.1); reason: shifted right"),
        ({"metric": "roc_auc", "drop": 0.08, "tolerance": 0.05}, "roc_auc: 0.08 (tolerance 0.05)"),
        (
            {"feature": "city", "violations": ["missing_rate", "unseen"]},
            "city: breached; violations: missing_rate, unseen",
        ),
        ({"name": "churn", "value": 0.4, "min": None, "max": 0.3}, "churn: 0.4 (max 0.3)"),
    ],
)
def test_detail_lines_read_every_shape_the_monitors_report(detail: dict[str, Any], expected: str) -> None:
    assert channels.detail_text(detail) == expected


def test_clip_marks_what_it_cut() -> None:
    assert channels.clip("abcdef", 4) == "abc…"
    assert channels.clip("abc", 4) == "abc"


# Slack -------------------------------------------------------------------------------------------------


def test_slack_message_shows_what_crossed_which_threshold_with_links() -> None:
    message = channels.slack_message(notify(alert()), runbook_url=RUNBOOK)
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header" and "[FIRING:1] DriftDetected" in blocks[0]["text"]["text"]
    section = next(b for b in blocks if b["type"] == "section")["text"]["text"]
    for wanted in (
        "2 of 5 features drifted",
        "*Severity:* warning",
        "*Model version:* 3",
        "mlcycle-dev-endpoint",
    ):
        assert wanted in section
    assert "age: ks 0.3142 (threshold 0.1)" in section and "income: psi 0.25 (threshold 0.2)" in section
    buttons = next(b for b in blocks if b["type"] == "actions")["elements"]
    assert [(b["text"]["text"], b["url"]) for b in buttons] == [("Report", REPORT), ("Runbook", RUNBOOK)]
    assert message["text"].startswith("[FIRING:1] DriftDetected") and "Drift on" in message["text"]


def test_slack_says_resolved_clearly() -> None:
    message = channels.slack_message(notify(alert(status="resolved")))
    assert "RESOLVED" in message["blocks"][0]["text"]["text"] and "RESOLVED" in message["text"]
    assert "*RESOLVED: Drift on" in texts(message["blocks"])
    assert "FIRING" not in texts(message["blocks"])


def test_slack_escapes_mrkdwn_and_shows_non_web_links_as_text() -> None:
    a = alert(description="score <0.5 & >0.1", links={"report": "s3://bucket/reports/42/report.html"})
    blocks = channels.slack_message(notify(a))["blocks"]
    assert "score &lt;0.5 &amp; &gt;0.1" in texts(blocks)
    assert not [b for b in blocks if b["type"] == "actions"]  # an s3 URI is no button
    assert (
        "s3://bucket/reports/42/report.html"
        in next(b for b in blocks if b["type"] == "context")["elements"][0]["text"]
    )


def test_slack_respects_block_kit_limits_by_truncating() -> None:
    huge = alert(
        summary="S" * 500,
        description="D" * 5000,
        details=[{"feature": f"f{i}" * 50, "score": 1.0, "threshold": 0.5} for i in range(200)],
    )
    many = [alert(f"fp{i}") for i in range(60)]
    group = Notification(
        channel="ops",
        group_key="k",
        group_labels={"alertname": "X" * 400},
        alerts=(huge, *many),
    )
    message = channels.slack_message(group, runbook_url=RUNBOOK)
    blocks = message["blocks"]
    assert len(blocks) <= channels.SLACK_BLOCKS_MAX
    assert len(blocks[0]["text"]["text"]) <= channels.SLACK_HEADER_MAX
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= channels.SLACK_TEXT_MAX
    assert "more alerts not shown" in blocks[-1]["elements"][0]["text"]
    assert len(message["text"]) <= channels.SLACK_TEXT_MAX


# PagerDuty ---------------------------------------------------------------------------------------------


def test_pagerduty_triggers_one_event_per_firing_alert_deduplicated_by_fingerprint() -> None:
    events = channels.pagerduty_events(notify(alert("fp-a"), alert("fp-b")), "R" * 32, runbook_url=RUNBOOK)
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [("trigger", "fp-a"), ("trigger", "fp-b")]
    event = events[0]
    assert event["routing_key"] == "R" * 32
    payload = event["payload"]
    assert payload["summary"] == "Drift on mlcycle-dev-endpoint (model v3)"
    assert payload["source"] == "mlcycle-dev-endpoint"
    assert (payload["severity"], payload["class"], payload["group"]) == ("warning", "DriftDetected", "model")
    assert payload["component"] == "3" and payload["timestamp"] == "2025-03-01T12:00:00Z"
    assert payload["custom_details"]["worst"][0] == "age: ks 0.3142 (threshold 0.1); reason: shifted right"
    assert event["links"] == [{"href": REPORT, "text": "Report"}, {"href": RUNBOOK, "text": "Runbook"}]
    json.dumps(events)  # serialisable as is


def test_pagerduty_resolves_with_the_same_dedup_key() -> None:
    (event,) = channels.pagerduty_events(notify(alert("fp-a", status="resolved")), "key")
    assert event == {"routing_key": "key", "dedup_key": "fp-a", "event_action": "resolve"}


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", "critical"),
        ("error", "error"),
        ("warning", "warning"),
        ("info", "info"),
        ("odd", "warning"),
    ],
)
def test_pagerduty_severities(severity: str, expected: str) -> None:
    (event,) = channels.pagerduty_events(notify(alert(severity=severity)), "key")
    assert event["payload"]["severity"] == expected


def test_pagerduty_summary_is_one_line_within_1024_characters_and_source_defaults() -> None:
    a = Alert(
        fingerprint="fp",
        status="firing",
        labels={"alertname": "TrainingFailed", "category": "pipeline", "severity": "error"},
        summary="line one\nline two " + "x" * 2000,
        description="",
        starts_at=STARTED,
    )
    (event,) = channels.pagerduty_events(notify(a), "key")
    summary = event["payload"]["summary"]
    assert len(summary) <= channels.PAGERDUTY_SUMMARY_MAX and "\n" not in summary
    assert event["payload"]["source"] == "mlcycle"


# Teams -------------------------------------------------------------------------------------------------


def test_teams_adaptive_card_in_its_envelope() -> None:
    message = channels.teams_message(notify(alert(), alert("fp2", status="resolved")), runbook_url=RUNBOOK)
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == "[FIRING:1] DriftDetected mlcycle-dev-endpoint"
    facts = [b for b in card["body"] if b["type"] == "FactSet"]
    assert len(facts) == 2
    first = {f["title"]: f["value"] for f in facts[0]["facts"]}
    assert first["Status"] == "FIRING" and first["Severity"] == "warning" and first["Model version"] == "3"
    assert first["Worst 1"].startswith("age: ks 0.3142")
    assert {f["title"]: f["value"] for f in facts[1]["facts"]}["Status"] == "RESOLVED"
    # links are actions, each URL once however many alerts share it
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Report", "url": REPORT},
        {"type": "Action.OpenUrl", "title": "Runbook", "url": RUNBOOK},
    ]


def test_teams_caps_the_alerts_shown() -> None:
    card = channels.teams_message(notify(*[alert(f"fp{i}") for i in range(25)]))["attachments"][0]["content"]
    assert len([b for b in card["body"] if b["type"] == "FactSet"]) == channels.TEAMS_ALERTS_MAX
    assert "15 more alerts" in card["body"][-1]["text"]


# Generic webhook ---------------------------------------------------------------------------------------


def test_webhook_is_alertmanagers_document() -> None:
    group = notify(alert("fp-a"), alert("fp-b", status="resolved", severity="critical"))
    document = channels.webhook_payload(group, runbook_url=RUNBOOK)
    assert document["version"] == "4" and document["status"] == "firing"
    assert document["groupKey"] == group.group_key and document["receiver"] == "ops"
    assert document["groupLabels"] == group.group_labels
    assert document["commonLabels"] == {
        "alertname": "DriftDetected",
        "category": "model",
        "endpoint": "mlcycle-dev-endpoint",
        "model_version": "3",
    }  # not severity: the two alerts differ
    firing, resolved = document["alerts"]
    assert set(firing) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "fingerprint",
        "generatorURL",
    }
    assert firing["annotations"]["summary"] == "Drift on mlcycle-dev-endpoint (model v3)"
    assert firing["annotations"]["description"].startswith("2 of 5 features")
    assert (
        firing["annotations"]["runbook_url"] == RUNBOOK
        and json.loads(firing["annotations"]["details"]) == DRIFTED
    )
    assert (firing["status"], firing["fingerprint"], firing["generatorURL"]) == ("firing", "fp-a", REPORT)
    assert firing["startsAt"] == "2025-03-01T12:00:00Z" and firing["endsAt"] == "0001-01-01T00:00:00Z"
    assert (resolved["status"], resolved["endsAt"]) == ("resolved", "2025-03-01T13:30:00Z")
    assert channels.webhook_payload(notify(alert(status="resolved")))["status"] == "resolved"


# SNS ---------------------------------------------------------------------------------------------------


def test_sns_subject_is_one_short_line_and_the_body_plain_text() -> None:
    message = channels.sns_message(notify(alert(), alert("fp2", status="resolved")), runbook_url=RUNBOOK)
    assert message.subject == "[FIRING:1] DriftDetected mlcycle-dev-endpoint"
    body = message.body
    assert "[FIRING] Drift on" in body and "[RESOLVED] Drift on" in body
    assert "severity: warning | endpoint: mlcycle-dev-endpoint | model version: 3" in body
    assert "- age: ks 0.3142 (threshold 0.1)" in body
    assert f"Report: {REPORT}" in body and f"Runbook: {RUNBOOK}" in body
    assert "Ended: 2025-03-01T13:30:00Z" in body
    assert len(message.sms) <= channels.SMS_MAX


def test_sns_subject_stays_within_sns_rules_whatever_the_labels() -> None:
    group = Notification(
        channel="email",
        group_key="k",
        group_labels={"alertname": "Drift\nDetected\t" + "y" * 300},
        alerts=(alert(status="resolved"),),
    )
    subject = channels.sns_message(group).subject
    assert subject.startswith("[RESOLVED] Drift Detected")
    assert len(subject) < 100 and not any(c in subject for c in "\r\n\t")


# The test notification ---------------------------------------------------------------------------------


def test_test_notification_is_harmless_and_stable_per_channel() -> None:
    first = channels.test_notification("pager")
    (a,) = first.alerts
    assert first.channel == "pager" and first.status == "firing" and a.severity == "info"
    assert "No action is needed" in a.description or "no action is needed" in a.description
    assert a.fingerprint == channels.test_notification("pager").alerts[0].fingerprint
    assert a.fingerprint != channels.test_notification("slack").alerts[0].fingerprint
    for render in (channels.slack_message, channels.teams_message, channels.webhook_payload):
        json.dumps(render(first))
    assert channels.pagerduty_events(first, "key")[0]["payload"]["severity"] == "info"
