"""The endpoint's system SLOs, alarmed by multi-window, multi-burn-rate alerts (Google's SRE workbook,
"Alerting on SLOs", recipe 6).

Two SLOs on the production variant (``EndpointName`` + ``VariantName`` ``AllTraffic``), both ratios of
bad to valid requests:

* **availability**: ``settings.monitoring.availability_slo`` of requests answer without a 5xx; bad share
  = ``Invocation5XXErrors / Invocations``;
* **latency**: 99% of requests answer within ``settings.monitoring.latency_slo_ms``; bad share = the
  share of ``ModelLatency`` samples above the threshold, ``(100 - PR(:threshold)) / 100``.

  Why the percentile rank rather than p99 over the windows: a burn rate is the bad share over the error
  budget, and ``PR`` measures exactly the bad share (CloudWatch computes it from the same distribution
  as ``p99``, so wherever ``p99 ModelLatency`` works, ``PR`` does). "p99 above the threshold" only says
  the burn rate is above 1; it cannot tell 14.4x from 1.1x, so it cannot be a burn-rate alert at all.
  ``ModelLatency`` is the model container's time (microseconds); ``OverheadLatency`` is not counted.

Burn rate = bad share / (1 - objective). Per SLO, two composite alarms (``AlarmRule.all_of`` of two
metric alarms, each a window of one period):

* **page**: burn rate above 14.4 over 1 hour AND over 5 minutes (2% of a 30-day budget in an hour);
* **ticket**: burn rate above 6 over 6 hours AND over 30 minutes (5% of the budget in 6 hours).

The long window makes the alert significant; the short one makes it reset soon after the burn stops.
Only the composites have actions (the alerts topic, on ALARM and on OK); the metric alarms are their
inputs. Missing data does not breach: no traffic burns no budget. The workbook's slowest tier (3 days
at 1x) is left out: a CloudWatch alarm period is at most a day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlcycle.config import Settings
from mlcycle.deployment import VARIANT

NAMESPACE = "AWS/SageMaker"
#: The latency SLO's objective: the share of requests answered within ``latency_slo_ms`` (p99).
LATENCY_OBJECTIVE = 0.99


@dataclass(frozen=True)
class BurnRateAlert:
    """One severity: both windows' burn rates above ``burn_rate`` -> the composite alarm fires."""

    severity: str
    burn_rate: float
    long_window: cdk.Duration
    short_window: cdk.Duration


#: The workbook's two fast tiers (for a 30-day SLO window).
ALERTS = (
    BurnRateAlert("page", 14.4, cdk.Duration.hours(1), cdk.Duration.minutes(5)),
    BurnRateAlert("ticket", 6.0, cdk.Duration.hours(6), cdk.Duration.minutes(30)),
)


@dataclass(frozen=True)
class SloAlert:
    """A composite alarm and the two window alarms it combines (long, short)."""

    slo: str
    severity: str
    composite: cloudwatch.CompositeAlarm
    windows: tuple[cloudwatch.Alarm, cloudwatch.Alarm]


class SloAlarms(Construct):
    """Attributes: ``alerts`` (every :class:`SloAlert`), ``composites`` (by ``(slo, severity)``)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        alerts: sns.ITopic,
        dashboard: cloudwatch.Dashboard | None = None,
    ) -> None:
        super().__init__(scope, id)
        self._settings = settings
        self._dimensions = {"EndpointName": settings.endpoint_name, "VariantName": VARIANT}
        monitoring = settings.monitoring
        latency = f"PR(:{_number(monitoring.latency_slo_ms * 1000)})"  # share (%) of samples within it
        slos = {
            # name: (objective, the bad share in metric math, its metrics as (statistic, metric name))
            "availability": (
                monitoring.availability_slo,
                "errors / invocations",
                {"errors": ("Sum", "Invocation5XXErrors"), "invocations": ("Sum", "Invocations")},
                f"{monitoring.availability_slo:.3%} of requests answer without a 5xx",
            ),
            "latency": (
                LATENCY_OBJECTIVE,
                "(100 - fast) / 100",
                {"fast": (latency, "ModelLatency")},
                f"{LATENCY_OBJECTIVE:.0%} of requests answer within {monitoring.latency_slo_ms:g} ms",
            ),
        }
        action = cw_actions.SnsAction(alerts)
        self.alerts: list[SloAlert] = []
        for slo, (objective, bad_share, metrics, meaning) in slos.items():
            burn_rate = f"({bad_share}) / {_number(round(1 - objective, 12))}"
            for tier in ALERTS:
                windows = (
                    self._window(slo, tier, tier.long_window, burn_rate, metrics),
                    self._window(slo, tier, tier.short_window, burn_rate, metrics),
                )
                composite = cloudwatch.CompositeAlarm(
                    self,
                    f"{slo.title()}{tier.severity.title()}",
                    composite_alarm_name=f"{settings.prefix}-slo-{slo}-{tier.severity}",
                    alarm_description=(
                        f"[{tier.severity}] {settings.endpoint_name}: the {slo} SLO ({meaning}) is burning "
                        f"its error budget faster than {tier.burn_rate:g}x over "
                        f"{_spoken(tier.long_window)} and over {_spoken(tier.short_window)}"
                    ),
                    alarm_rule=cloudwatch.AlarmRule.all_of(*windows),
                )
                composite.add_alarm_action(action)
                composite.add_ok_action(action)
                self.alerts.append(SloAlert(slo, tier.severity, composite, windows))
        self.composites = {(a.slo, a.severity): a.composite for a in self.alerts}
        if dashboard is not None:
            self.add_to(dashboard)

    def add_to(self, dashboard: cloudwatch.Dashboard) -> None:
        """The composites' states in one row, then each window's burn rate against its threshold."""
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Endpoint SLOs (burn-rate alerts)",
                alarms=[a.composite for a in self.alerts],
                width=24,
            )
        )
        dashboard.add_widgets(
            *(
                cloudwatch.AlarmWidget(alarm=window, title=_title(window), width=6, height=5)
                for alert in self.alerts
                for window in alert.windows
            )
        )

    def _window(
        self,
        slo: str,
        tier: BurnRateAlert,
        window: cdk.Duration,
        burn_rate: str,
        metrics: Mapping[str, tuple[str, str]],
    ) -> cloudwatch.Alarm:
        """Burn rate over one window: one period as long as the window, above the tier's rate."""
        burn = cloudwatch.MathExpression(
            expression=burn_rate,
            using_metrics={id_: self._metric(name, stat, window) for id_, (stat, name) in metrics.items()},
            period=window,
            label=f"{slo} burn rate ({_spoken(window)})",
        )
        label = _spoken(window).replace(" ", "")
        return burn.create_alarm(
            self,
            f"{slo.title()}BurnRate{label}",
            alarm_description=(
                f"{self._settings.endpoint_name}: {slo} SLO burn rate over {_spoken(window)} above "
                f"{tier.burn_rate:g} (input of the {tier.severity} alert; no actions of its own)"
            ),
            threshold=tier.burn_rate,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _metric(self, name: str, statistic: str, period: cdk.Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map=self._dimensions,
            statistic=statistic,
            period=period,
        )


def _spoken(window: cdk.Duration) -> str:
    minutes = int(window.to_minutes())
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _title(alarm: cloudwatch.Alarm) -> str:
    return alarm.node.id.replace("BurnRate", " burn rate ")


def _number(value: float) -> str:
    """A decimal CloudWatch's metric math reads (no exponent): 0.001 -> ``0.001``."""
    return f"{value:.12f}".rstrip("0").rstrip(".")
