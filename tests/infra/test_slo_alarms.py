"""The endpoint's SLO burn-rate alerts: composite alarms over window alarms, to the alerts topic and the
dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.slo_alarms import LATENCY_OBJECTIVE
from tests.infra.synthesized import Synthesized

#: (severity, burn rate, long window s, short window s): the SRE workbook's two fast tiers
TIERS = [("page", 14.4, 3600, 300), ("ticket", 6.0, 21600, 1800)]


def _window(synthesized: Synthesized, slo: str, severity: str) -> list[dict[str, Any]]:
    alert = next(a for a in synthesized.stack.slo_alarms.alerts if (a.slo, a.severity) == (slo, severity))
    return [synthesized.properties(w) for w in alert.windows]


@pytest.mark.parametrize(("severity", "rate", "long", "short"), TIERS)
def test_availability_burn_rate_is_the_5xx_share_over_the_budget(
    synthesized: Synthesized, severity: str, rate: float, long: int, short: int
) -> None:
    settings = synthesized.settings
    dimensions = [
        {"Name": "EndpointName", "Value": settings.endpoint_name},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    budget = round(1 - settings.monitoring.availability_slo, 12)
    windows = _window(synthesized, "availability", severity)
    for props, period in zip(windows, (long, short), strict=True):
        [expression] = [q["Expression"] for q in props["Metrics"] if "Expression" in q]
        assert expression == f"(errors / invocations) / {budget:g}"
        stats = {q["Id"]: q["MetricStat"] for q in props["Metrics"] if "MetricStat" in q}
        assert {i: s["Metric"]["MetricName"] for i, s in stats.items()} == {
            "errors": "Invocation5XXErrors",
            "invocations": "Invocations",
        }
        assert all(s["Stat"] == "Sum" and s["Period"] == period for s in stats.values())
        assert all(s["Metric"]["Dimensions"] == dimensions for s in stats.values())
        _one_window_above(props, rate)


@pytest.mark.parametrize(("severity", "rate", "long", "short"), TIERS)
def test_latency_burn_rate_is_the_share_slower_than_the_objective(
    synthesized: Synthesized, severity: str, rate: float, long: int, short: int
) -> None:
    threshold_us = synthesized.settings.monitoring.latency_slo_ms * 1000
    for props, period in zip(_window(synthesized, "latency", severity), (long, short), strict=True):
        [expression] = [q["Expression"] for q in props["Metrics"] if "Expression" in q]
        assert expression == f"((100 - fast) / 100) / {round(1 - LATENCY_OBJECTIVE, 12):g}"
        [fast] = [q["MetricStat"] for q in props["Metrics"] if "MetricStat" in q]
        assert fast["Metric"]["MetricName"] == "ModelLatency"  # microseconds
        assert fast["Stat"] == f"PR(:{threshold_us:.0f})" and fast["Period"] == period
        _one_window_above(props, rate)


def _one_window_above(props: dict[str, Any], rate: float) -> None:
    assert props["Threshold"] == rate
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (1, 1)  # the period is the window
    assert props["TreatMissingData"] == "notBreaching"  # no traffic burns no budget
    assert "AlarmActions" not in props and "OKActions" not in props  # only the composites alert


def test_each_alert_is_a_composite_of_both_windows_to_the_alerts_topic(synthesized: Synthesized) -> None:
    slo_alarms = synthesized.stack.slo_alarms
    topic = {"Ref": synthesized.logical_id(synthesized.stack.alerting.alerts)}
    assert sorted(slo_alarms.composites) == [
        ("availability", "page"),
        ("availability", "ticket"),
        ("latency", "page"),
        ("latency", "ticket"),
    ]
    for alert in slo_alarms.alerts:
        props = synthesized.properties(alert.composite)
        long, short = (synthesized.logical_id(w) for w in alert.windows)
        assert props["AlarmRule"] == {
            "Fn::Join": [
                "",
                [
                    '(ALARM("',
                    {"Fn::GetAtt": [long, "Arn"]},
                    '") AND ALARM("',
                    {"Fn::GetAtt": [short, "Arn"]},
                    '"))',
                ],
            ]
        }
        assert props["AlarmActions"] == [topic] and props["OKActions"] == [topic]
        assert props["AlarmName"] == f"{synthesized.settings.prefix}-slo-{alert.slo}-{alert.severity}"
        assert props["AlarmDescription"].startswith(f"[{alert.severity}]")


def test_the_dashboard_shows_the_alerts_and_each_windows_burn_rate(synthesized: Synthesized) -> None:
    body = synthesized.properties(synthesized.stack.monitoring.dashboard)["DashboardBody"]
    text = json.dumps(body)
    for alert in synthesized.stack.slo_alarms.alerts:
        assert synthesized.logical_id(alert.composite) in text  # the alarm status widget
        for window in alert.windows:
            assert synthesized.logical_id(window) in text  # an alarm widget per window
    assert "Endpoint SLOs (burn-rate alerts)" in text
