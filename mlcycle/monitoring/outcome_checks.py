"""The checks that need labels: model quality, bias and business KPIs of one window.

The window's rows (typed by the model's schema, with their model version) are joined with every label
known now (``labels.load``, read once per monitor run by the caller; keyed by inference id); model
quality is judged against the metrics registered with the serving model, bias against the segments of
its reference sample, KPIs against the settings' bounds. A window without enough labels answers
``None`` (insufficient data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlcycle import modeling
from mlcycle.config import Settings
from mlcycle.monitoring import bias, capture, kpis, labels, model_quality, outcomes

METRIC_PREFIX = "metric:"


@dataclass
class OutcomeChecks:
    quality: model_quality.QualityResult
    bias: bias.BiasResult
    kpis: list[kpis.KpiResult]

    @property
    def findings(self) -> dict[str, bool | None]:
        judged = [k.breached for k in self.kpis if k.breached is not None]
        return {
            "model_quality": self.quality.degraded,
            "bias": self.bias.detected,
            "kpi": any(judged) if judged else None,
        }

    def worst(self) -> dict[str, list[dict[str, Any]]]:
        quality = self.quality
        degraded = [{"metric": quality.primary_metric, "drop": quality.drop, "tolerance": quality.tolerance}]
        return {
            "model_quality": degraded if quality.degraded else [],
            "bias": [s.__dict__ for s in self.bias.segments if s.detected][:5],
            "kpi": [k.to_dict() for k in self.kpis if k.breached][:5],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_quality": self.quality.to_dict(),
            "bias": self.bias.to_dict(),
            "kpis": [k.to_dict() for k in self.kpis],
        }


def judge(
    settings: Settings,
    window: pd.DataFrame,
    known_labels: pd.DataFrame,
    *,
    package: dict[str, Any],
    reference: pd.DataFrame,
) -> OutcomeChecks:
    problem = settings.problem.model_dump(mode="json")
    numeric = [name for name, kind in modeling.feature_schema(problem).items() if kind == "numeric"]
    joined = outcomes.join(capture.typed(window, numeric), known_labels)
    metadata = package.get("CustomerMetadataProperties", {})
    registered = {
        k.removeprefix(METRIC_PREFIX): float(v) for k, v in metadata.items() if k.startswith(METRIC_PREFIX)
    }
    monitoring = settings.monitoring
    attribute = settings.model_tests.sensitive_attribute
    positive = labels.positive_label(settings.problem) if settings.problem.task == "classification" else 1
    has_labels = attribute is not None and "label" in reference.columns and attribute in reference.columns
    segments = bias.baseline(reference, attribute, positive=positive) if has_labels and attribute else {}
    return OutcomeChecks(
        quality=model_quality.evaluate(joined, settings.problem, registered, monitoring),
        bias=bias.evaluate(joined, attribute, segments, monitoring.bias_tolerance),
        kpis=kpis.evaluate(joined, monitoring.kpis),
    )
