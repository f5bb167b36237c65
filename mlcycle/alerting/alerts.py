"""Events become alerts: the monitors' findings and recoveries, failed runs, rollbacks and our CloudWatch
alarms' state changes, each turned into an :class:`~mlcycle.alerting.model.Alert` with a stable
fingerprint, so the same problem on the same endpoint is one alert however often it is reported.

A recovery reported by the next model version must resolve what its predecessor raised, so the
fingerprint leaves out the model version (and the severity, which the settings may change).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlcycle.alerting.model import Alert, AlertStatus
from mlcycle.config import Settings
from mlcycle.names import ALARM_STATE_CHANGE, CLOUDWATCH_SOURCE, EVENT_SOURCE, EventType

#: The labels that identify an alert (its fingerprint); ``alarm`` only on CloudWatch alarms.
IDENTIFYING_LABELS = ("alertname", "category", "endpoint", "alarm")

#: Severity by alert name; ``settings.alerts.severities`` overrides it. Alarms not named here are
#: critical, unless their name says they are a ticket (the SLO burn rate's slow tier).
DEFAULT_SEVERITY: dict[str, str] = {
    "Drift": "warning",
    "DataQuality": "warning",
    "ModelQuality": "error",
    "Bias": "warning",
    "Kpi": "warning",
    "TrainingFailed": "error",
    "DeploymentRolledBack": "error",
}
ALARM_SEVERITY = "critical"
TICKET_ALARM_SEVERITY = "warning"


@dataclass(frozen=True)
class MonitorKind:
    alertname: str
    status: AlertStatus
    what: str


#: Our monitor events: the alert they raise (or resolve) and what it means, in words.
MONITOR_EVENTS: dict[str, MonitorKind] = {
    EventType.DRIFT_DETECTED: MonitorKind("Drift", "firing", "the inputs drifted"),
    EventType.DRIFT_RECOVERED: MonitorKind("Drift", "resolved", "the inputs no longer drift"),
    EventType.MODEL_QUALITY_DEGRADED: MonitorKind("ModelQuality", "firing", "the model's quality fell"),
    EventType.MODEL_QUALITY_RECOVERED: MonitorKind("ModelQuality", "resolved", "the quality recovered"),
    EventType.DATA_QUALITY_VIOLATED: MonitorKind("DataQuality", "firing", "the inputs break the baseline"),
    EventType.DATA_QUALITY_RECOVERED: MonitorKind("DataQuality", "resolved", "the inputs are clean again"),
    EventType.BIAS_DETECTED: MonitorKind("Bias", "firing", "a segment's outcomes moved"),
    EventType.BIAS_RECOVERED: MonitorKind("Bias", "resolved", "the segments are back in line"),
    EventType.KPI_BREACHED: MonitorKind("Kpi", "firing", "a business KPI left its range"),
    EventType.KPI_RECOVERED: MonitorKind("Kpi", "resolved", "the KPIs are back in range"),
}
#: Our pipeline events: one-off alerts that fire and are resolved by hand (or by a later success).
PIPELINE_EVENTS = (EventType.TRAINING_FAILED, EventType.DEPLOYMENT_ROLLED_BACK)


def now_utc() -> datetime:
    return datetime.now(UTC)


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of an alert: sha256 over its identifying labels (never severity or model version)."""
    identity = {k: labels[k] for k in IDENTIFYING_LABELS if labels.get(k)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def severity(settings: Settings, alertname: str, default: str | None = None) -> str:
    return settings.alerts.severities.get(alertname) or DEFAULT_SEVERITY.get(alertname) or default or "error"


def event_time(event: Mapping[str, Any]) -> datetime:
    """The envelope's ``time`` (EventBridge: ISO 8601 with ``Z``), in UTC; now when absent."""
    raw = event.get("time")
    if not raw:
        return now_utc()
    parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def alert_from_event(event: Mapping[str, Any], settings: Settings) -> Alert | None:
    """The alert an EventBridge event raises or resolves, or None (not an alert: another source, an
    alarm of another stack, ``INSUFFICIENT_DATA``, or a note such as ``RetrainingStarted``)."""
    source, kind = event.get("source"), str(event.get("detail-type", ""))
    detail: Mapping[str, Any] = event.get("detail") or {}
    if source == EVENT_SOURCE and kind in MONITOR_EVENTS:
        return _monitor_alert(event, MONITOR_EVENTS[kind], detail, settings)
    if source == EVENT_SOURCE and kind in PIPELINE_EVENTS:
        return _pipeline_alert(event, kind, detail, settings)
    if source == CLOUDWATCH_SOURCE and kind == ALARM_STATE_CHANGE:
        return _alarm_alert(event, detail, settings)
    return None


def is_note(event: Mapping[str, Any]) -> bool:
    """Events that are not alerts but belong in an alert's thread (a retraining it started)."""
    return event.get("source") == EVENT_SOURCE and event.get("detail-type") == EventType.RETRAINING_STARTED


def _alert(event: Mapping[str, Any], status: AlertStatus, labels: dict[str, str], **fields: Any) -> Alert:
    at = event_time(event)
    return Alert(
        fingerprint=fingerprint(labels),
        status=status,
        labels=labels,
        starts_at=at,
        ends_at=at if status == "resolved" else None,
        event_id=str(event.get("id", "")),
        **fields,
    )


def _monitor_alert(
    event: Mapping[str, Any], kind: MonitorKind, detail: Mapping[str, Any], settings: Settings
) -> Alert:
    endpoint = str(detail.get("endpoint") or settings.endpoint_name)
    version = detail.get("model_version")
    labels = {
        "alertname": kind.alertname,
        "category": "model",
        "severity": severity(settings, kind.alertname),
        "endpoint": endpoint,
        "source": EVENT_SOURCE,
    }
    if version is not None:
        labels["model_version"] = str(version)
    worst = [dict(w) for w in detail.get("worst") or [] if isinstance(w, Mapping)]
    on = f"{endpoint} (model v{version})" if version is not None else endpoint
    links = {"report": str(detail["report_uri"])} if detail.get("report_uri") else {}
    if settings.alerts.runbook_url:
        links["runbook"] = settings.alerts.runbook_url
    return _alert(
        event,
        kind.status,
        labels,
        summary=f"{kind.alertname} on {on}" + (" resolved" if kind.status == "resolved" else ""),
        description=describe(kind.what, worst, detail.get("window_id")),
        details=worst,
        links=links,
    )


def _pipeline_alert(
    event: Mapping[str, Any], kind: str, detail: Mapping[str, Any], settings: Settings
) -> Alert:
    endpoint = str(detail.get("endpoint_name") or settings.endpoint_name)
    labels = {
        "alertname": kind,
        "category": "pipeline",
        "severity": severity(settings, kind),
        "endpoint": endpoint,
        "source": EVENT_SOURCE,
    }
    links = {"report": str(detail["report_uri"])} if detail.get("report_uri") else {}
    if detail.get("execution_arn"):
        links["execution"] = str(detail["execution_arn"])
    if kind == EventType.TRAINING_FAILED:
        summary = "The training pipeline failed"
        description = f"{detail.get('error', 'error')}: {str(detail.get('cause', ''))[:500]}".strip(": ")
    else:
        summary = f"A deployment to {endpoint} was rolled back"
        alarm = f" (alarm {detail['alarm']})" if detail.get("alarm") else ""
        description = f"{detail.get('reason') or 'rolled back'}{alarm}; the previous model serves"
    return _alert(event, "firing", labels, summary=summary, description=description, links=links)


def _alarm_alert(event: Mapping[str, Any], detail: Mapping[str, Any], settings: Settings) -> Alert | None:
    name = str(detail.get("alarmName", ""))
    state = str((detail.get("state") or {}).get("value", ""))
    if state not in ("ALARM", "OK") or not _our_alarm(name, detail, settings):
        return None
    alertname = name.removeprefix(settings.prefix).lstrip("-") or name
    default = TICKET_ALARM_SEVERITY if name.endswith("-ticket") else ALARM_SEVERITY
    labels = {
        "alertname": alertname,
        "category": "system",
        "severity": severity(settings, alertname, default),
        "endpoint": settings.endpoint_name,
        "alarm": name,
        "source": CLOUDWATCH_SOURCE,
    }
    status: AlertStatus = "firing" if state == "ALARM" else "resolved"
    configuration = detail.get("configuration") or {}
    return _alert(
        event,
        status,
        labels,
        summary=f"Alarm {name} is {state}",
        description=str((detail.get("state") or {}).get("reason") or configuration.get("description", "")),
        links={"alarm": _alarm_link(event, name)},
    )


def _our_alarm(name: str, detail: Mapping[str, Any], settings: Settings) -> bool:
    """Our stack's alarms: named with its prefix, or watching its endpoint."""
    if name.startswith(settings.prefix):
        return True
    metrics = (detail.get("configuration") or {}).get("metrics") or []
    for metric in metrics:
        dimensions = ((metric.get("metricStat") or {}).get("metric") or {}).get("dimensions") or {}
        if dimensions.get("EndpointName") == settings.endpoint_name:
            return True
    return False


def _alarm_link(event: Mapping[str, Any], name: str) -> str:
    region = event.get("region") or "us-east-1"
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#alarmsV2:alarm/{name}"


def describe(what: str, worst: list[dict[str, Any]], window_id: Any = None) -> str:
    """What crossed which threshold, in one sentence: the monitors' worst items, rendered briefly."""
    items = "; ".join(_item(w) for w in worst[:5])
    window = f" (window {window_id})" if window_id else ""
    return f"{what[0].upper()}{what[1:]}{window}" + (f": {items}" if items else "")


def _item(worst: Mapping[str, Any]) -> str:
    """One worst item: drift (feature, test, score, threshold), data quality (violations), model quality
    (metric, drop, tolerance), bias (segment, changes), KPI (name, value, range); others as key=value."""
    name = next((str(worst[k]) for k in ("feature", "metric", "segment", "name") if k in worst), "")
    if "score" in worst and "threshold" in worst:
        return f"{name} {worst.get('test', 'score')} {_num(worst['score'])} > {_num(worst['threshold'])}"
    if "violations" in worst:
        return f"{name}: {', '.join(str(v) for v in worst['violations'])}"
    if "drop" in worst:
        return f"{name} dropped by {_num(worst['drop'])} (tolerance {_num(worst.get('tolerance'))})"
    if "value" in worst and ("min" in worst or "max" in worst):
        return f"{name} = {_num(worst['value'])} outside [{_num(worst.get('min'))}, {_num(worst.get('max'))}]"
    rest = ", ".join(
        f"{k}={_num(v)}" for k, v in worst.items() if v is not None and str(worst.get(k)) != name
    )
    return f"{name} ({rest})" if name else rest


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Note:
    """A line in an alert's thread: what was done about it (a retraining it started...)."""

    fingerprint: str
    at: datetime
    kind: str
    text: str
    event_id: str = ""
    links: Mapping[str, str] | None = None


def note_from_event(event: Mapping[str, Any]) -> Note | None:
    """``RetrainingStarted`` answering an alert (its trigger names the alert's fingerprint), or None."""
    if not is_note(event):
        return None
    detail: Mapping[str, Any] = event.get("detail") or {}
    trigger: Mapping[str, Any] = detail.get("trigger") or {}
    fp = trigger.get("alert_fingerprint")
    if not fp:
        return None
    arn = detail.get("execution_arn")
    return Note(
        fingerprint=str(fp),
        at=event_time(event),
        kind=str(event.get("detail-type")),
        text=f"retraining started ({trigger.get('type', 'trigger')}): {trigger.get('reason', '')}".strip(
            ": "
        ),
        event_id=str(event.get("id", "")),
        links={"execution": str(arn)} if arn else None,
    )
