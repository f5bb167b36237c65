"""Alertmanager's rules as mlcycle.alerting applies them: events to alerts, fingerprints, routes,
inhibition, silences and groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlcycle.alert_settings import AlertChannel, AlertChannels, AlertGrouping, AlertRoute, InhibitRule
from mlcycle.alerting import rules
from mlcycle.alerting.alerts import alert_from_event, fingerprint, note_from_event
from mlcycle.alerting.model import Alert
from mlcycle.config import Settings

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def ours(detail_type: str, detail: dict[str, Any], id: str = "e-1") -> dict[str, Any]:
    return {
        "id": id,
        "time": "2025-03-01T12:00:00Z",
        "source": "mlcycle",
        "detail-type": detail_type,
        "detail": detail,
    }


def monitor_detail(
    settings: Settings, version: int = 3, worst: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "endpoint": settings.endpoint_name,
        "model_version": version,
        "window_id": "2025-03-01T11:00:00Z",
        "finding": "drift",
        "report_uri": "s3://monitoring/reports/w1/report.html",
        "worst": worst
        if worst is not None
        else [{"feature": "tenure", "test": "ks", "score": 0.41, "threshold": 0.1, "reason": "ks"}],
    }


def alarm_event(name: str, state: str, endpoint: str = "x", id: str = "a-1") -> dict[str, Any]:
    """Shaped like AWS's "CloudWatch Alarm State Change" (docs: CloudWatch alarm events)."""
    return {
        "version": "0",
        "id": id,
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2025-03-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "state": {
                "value": state,
                "reason": "Threshold Crossed: 1 out of the last 1 datapoints was greater than the threshold",
                "timestamp": "2025-03-01T12:00:00.000+0000",
            },
            "previousState": {"value": "OK", "reason": "", "timestamp": "2025-03-01T11:00:00.000+0000"},
            "configuration": {
                "description": "5xx above the SLO",
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {
                                "namespace": "AWS/SageMaker",
                                "name": "Invocation5XXErrors",
                                "dimensions": {"EndpointName": endpoint, "VariantName": "AllTraffic"},
                            },
                            "period": 60,
                            "stat": "Sum",
                        },
                        "returnData": True,
                    }
                ],
            },
        },
    }


def test_monitor_events_raise_and_resolve_one_alert(settings: Settings) -> None:
    fired = alert_from_event(ours("DriftDetected", monitor_detail(settings, 3)), settings)
    recovered = alert_from_event(ours("DriftRecovered", monitor_detail(settings, 4, [])), settings)
    assert fired is not None and recovered is not None
    assert fired.status == "firing" and recovered.status == "resolved"
    assert fired.labels["alertname"] == "Drift" and fired.labels["category"] == "model"
    assert fired.labels["endpoint"] == settings.endpoint_name and fired.labels["model_version"] == "3"
    assert fired.severity == "warning"
    assert "tenure ks 0.41 > 0.1" in fired.description
    assert fired.links["report"] == "s3://monitoring/reports/w1/report.html"
    assert fired.starts_at == T0 and fired.event_id == "e-1"
    # The next model version's recovery resolves its predecessor's alert.
    assert recovered.fingerprint == fired.fingerprint
    assert recovered.ends_at == T0


@pytest.mark.parametrize(
    ("detail_type", "alertname", "severity"),
    [
        ("ModelQualityDegraded", "ModelQuality", "error"),
        ("DataQualityViolated", "DataQuality", "warning"),
        ("BiasDetected", "Bias", "warning"),
        ("KpiBreached", "Kpi", "warning"),
    ],
)
def test_each_monitor_finding(settings: Settings, detail_type: str, alertname: str, severity: str) -> None:
    worst = {
        "ModelQuality": [{"metric": "roc_auc", "drop": 0.08, "tolerance": 0.05}],
        "DataQuality": [{"feature": "age", "violations": ["missing rate 0.3 > 0.1"]}],
        "Bias": [{"segment": "region=north", "positive_rate_change": 0.2, "recall_change": None}],
        "Kpi": [{"name": "churn_rate", "value": 0.4, "min": None, "max": 0.3, "breached": True}],
    }[alertname]
    alert = alert_from_event(ours(detail_type, monitor_detail(settings, worst=worst)), settings)
    assert alert is not None
    assert (alert.name, alert.severity, alert.status) == (alertname, severity, "firing")
    expected = {
        "ModelQuality": "roc_auc dropped by 0.08 (tolerance 0.05)",
        "DataQuality": "age: missing rate 0.3 > 0.1",
        "Bias": "region=north (positive_rate_change=0.2",
        "Kpi": "churn_rate = 0.4 outside [None, 0.3]",
    }[alertname]
    assert expected in alert.description


def test_severities_from_settings_override_the_defaults(settings: Settings) -> None:
    custom = settings.model_copy(update={"alerts": AlertChannels(severities={"Drift": "critical"})})
    alert = alert_from_event(ours("DriftDetected", monitor_detail(settings)), custom)
    assert alert is not None and alert.severity == "critical"
    plain = alert_from_event(ours("DriftDetected", monitor_detail(settings)), settings)
    assert plain is not None and plain.fingerprint == alert.fingerprint  # severity is not identity


def test_pipeline_events_fire(settings: Settings) -> None:
    failed = alert_from_event(
        ours(
            "TrainingFailed",
            {
                "execution_arn": "arn:exec",
                "error": "QualityGateFailed",
                "report_uri": "s3://a/r.json",
                "cause": "x",
            },
        ),
        settings,
    )
    rolled = alert_from_event(
        ours(
            "DeploymentRolledBack",
            {
                "endpoint_name": settings.endpoint_name,
                "reason": "alarm",
                "alarm": "latency",
                "outcome": "rolled_back",
            },
        ),
        settings,
    )
    assert failed is not None and rolled is not None
    assert (failed.name, failed.labels["category"], failed.status, failed.severity) == (
        "TrainingFailed",
        "pipeline",
        "firing",
        "error",
    )
    assert failed.links == {"report": "s3://a/r.json", "execution": "arn:exec"}
    assert "QualityGateFailed" in failed.description
    assert rolled.name == "DeploymentRolledBack" and "latency" in rolled.description


def test_our_alarms_become_system_alerts(settings: Settings) -> None:
    name = f"{settings.prefix}-slo-availability-page"
    fired = alert_from_event(alarm_event(name, "ALARM"), settings)
    ok = alert_from_event(alarm_event(name, "OK"), settings)
    assert fired is not None and ok is not None
    assert fired.status == "firing" and ok.status == "resolved" and ok.fingerprint == fired.fingerprint
    assert fired.labels["category"] == "system" and fired.severity == "critical"
    assert fired.name == "slo-availability-page" and fired.labels["endpoint"] == settings.endpoint_name
    assert "Threshold Crossed" in fired.description
    ticket = alert_from_event(alarm_event(f"{settings.prefix}-slo-latency-ticket", "ALARM"), settings)
    assert ticket is not None and ticket.severity == "warning"
    assert ticket.fingerprint != fired.fingerprint


def test_alarms_of_others_and_insufficient_data_are_ignored(settings: Settings) -> None:
    assert alert_from_event(alarm_event("someone-elses-alarm", "ALARM"), settings) is None
    assert alert_from_event(alarm_event(f"{settings.prefix}-x", "INSUFFICIENT_DATA"), settings) is None
    # An unprefixed alarm that watches our endpoint is ours.
    watching = alert_from_event(alarm_event("ProdErrors", "ALARM", endpoint=settings.endpoint_name), settings)
    assert watching is not None and watching.name == "ProdErrors"
    assert (
        alert_from_event({"source": "mlcycle", "detail-type": "ModelDeployed", "detail": {}}, settings)
        is None
    )


def test_retraining_started_is_a_note(settings: Settings) -> None:
    fp = fingerprint({"alertname": "Drift", "category": "model", "endpoint": settings.endpoint_name})
    event = ours(
        "RetrainingStarted",
        {
            "trigger": {"type": "DriftDetected", "reason": "drift", "alert_fingerprint": fp},
            "execution_arn": "arn:e",
        },
    )
    assert alert_from_event(event, settings) is None
    note = note_from_event(event)
    assert note is not None and note.fingerprint == fp and note.links == {"execution": "arn:e"}
    assert note.text == "retraining started (DriftDetected): drift"


def test_fingerprint_is_stable_and_ignores_severity_and_version() -> None:
    labels = {
        "alertname": "Drift",
        "category": "model",
        "endpoint": "e",
        "severity": "warning",
        "model_version": "3",
    }
    same = labels | {"severity": "critical", "model_version": "4", "source": "x"}
    assert fingerprint(labels) == fingerprint(same) == fingerprint(dict(reversed(list(labels.items()))))
    assert fingerprint(labels) != fingerprint(labels | {"endpoint": "f"})
    assert fingerprint(labels) != fingerprint(labels | {"alertname": "Bias"})
    # Pinned: stored alerts must keep their identity across releases.
    assert fingerprint({"alertname": "Drift", "category": "model", "endpoint": "e"}) == fingerprint(labels)
    assert len(fingerprint(labels)) == 64


def alert(name: str, status: str = "firing", **labels: str) -> Alert:
    full = {"alertname": name, "category": "model", "severity": "warning", "endpoint": "e"} | labels
    return Alert(fingerprint(full), status, full, name, "", T0)  # type: ignore[arg-type]


def test_routes_first_match_wins_unless_continue() -> None:
    channels = (
        AlertChannel(name="email", kind="sns"),
        AlertChannel(name="pager", kind="pagerduty", secret="pd"),
        AlertChannel(name="chat", kind="slack", secret="slack"),
    )
    config = AlertChannels(
        channels=channels,
        routes=(
            AlertRoute(match={"severity": ("critical",)}, channels=("pager",), continue_matching=True),
            AlertRoute(match={"category": ("system", "pipeline")}, channels=("chat", "email")),
            AlertRoute(channels=("email",)),
        ),
    )
    critical = {"severity": "critical", "category": "system"}
    assert rules.routes_for(critical, config) == [
        rules.Route("0", ("pager",)),
        rules.Route("1", ("chat", "email")),
    ]
    assert rules.routes_for({"severity": "warning", "category": "model"}, config) == [
        rules.Route("2", ("email",))
    ]
    everyone = rules.routes_for({"category": "model"}, AlertChannels(channels=channels))
    assert everyone == [rules.Route("default", ("email", "pager", "chat"))]
    narrow = AlertChannels(
        channels=channels, routes=(AlertRoute(match={"category": ("system",)}, channels=("pager",)),)
    )
    assert rules.routes_for({"category": "model"}, narrow) == []


def test_group_key_from_group_by() -> None:
    grouping = AlertGrouping(group_by=("alertname", "endpoint"))
    route = rules.Route("0", ("email",))
    a, b = alert("Drift", model_version="3"), alert("Drift", model_version="4", severity="critical")
    assert rules.group_key(route, a.labels, grouping) == rules.group_key(route, b.labels, grouping)
    assert rules.group_key(route, a.labels, grouping) != rules.group_key(
        route, alert("Bias").labels, grouping
    )
    assert rules.group_key(rules.Route("1", ()), a.labels, grouping) != rules.group_key(
        route, a.labels, grouping
    )
    assert rules.group_labels(a.labels, grouping) == {"alertname": "Drift", "endpoint": "e"}


def test_inhibition_needs_a_firing_source_with_equal_labels() -> None:
    rule = InhibitRule(
        source={"category": ("system",), "severity": ("critical",)}, target={"category": ("model",)}
    )
    down = alert("slo-availability-page", category="system", severity="critical")
    drift = alert("Drift")
    assert rules.inhibited(drift, [down, drift], [rule]) == down
    assert (
        rules.inhibited(drift, [alert("x", "resolved", category="system", severity="critical")], [rule])
        is None
    )
    assert (
        rules.inhibited(drift, [alert("y", category="system", severity="critical", endpoint="other")], [rule])
        is None
    )
    assert rules.inhibited(down, [down, drift], [rule]) is None  # the target side does not match
    assert rules.inhibited(drift, [alert("z", category="system", severity="warning")], [rule]) is None


def test_silences_match_exactly_or_by_regex_while_active() -> None:
    silence = rules.Silence(
        "s1",
        rules.matchers(["alertname=Drift", "endpoint=~mlcycle-.*"]),
        T0,
        T0 + timedelta(hours=1),
        "known",
        "ana",
    )
    hit = {"alertname": "Drift", "endpoint": "mlcycle-dev-endpoint"}
    assert rules.silenced(hit, [silence], T0 + timedelta(minutes=5)) == silence
    assert rules.silenced(hit, [silence], T0 + timedelta(hours=1)) is None  # ended
    assert rules.silenced(hit, [silence], T0 - timedelta(seconds=1)) is None  # not started
    assert rules.silenced(hit | {"endpoint": "x-mlcycle-dev"}, [silence], T0) is None  # the regex is anchored
    assert rules.silenced(hit | {"alertname": "Bias"}, [silence], T0) is None
    assert rules.matchers({"alertname": "Drift", "endpoint": "~m.*"})[1] == rules.Matcher(
        "endpoint", "m.*", True
    )
    assert str(rules.Matcher.parse("a=~b.*")) == "a=~b.*"
    with pytest.raises(ValueError, match="label=value"):
        rules.Matcher.parse("nonsense")
