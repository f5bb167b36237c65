"""EventBridge schedule (per endpoint) -> one monitor window: the capture that arrived since the last
window, judged for drift and data quality against the serving model's reference (mlcycle.monitoring).

The window's id is the schedule's time, so a redelivered schedule event replays the committed window
instead of counting its capture again. Its figures go to CloudWatch as embedded metric format (EMF)
through Powertools Metrics: per endpoint and model version, and the drift score per feature.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, runtime
from mlcycle.monitoring import monitor

logger = Logger()
tracer = Tracer()
NAMESPACE = "mlcycle/monitoring"
metrics = Metrics(namespace=NAMESPACE)
#: Also published per endpoint alone, whatever the model version: what the monitor alarms watch.
ALARMED = ("drifted_feature_share", "data_quality_violations", "label_coverage")


class Environment(runtime.FunctionEnvironment):
    handler = "functions.monitor_endpoint"
    monitoring_bucket: str
    monitor_table: str
    event_bus: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings, env = runtime.settings(), runtime.environment(Environment)
    platform = monitor.Platform(
        s3=aws.client("s3"),
        sagemaker=aws.client("sagemaker"),
        dynamodb=aws.client("dynamodb"),
        events=aws.client("events"),
        event_bus=env.event_bus,
        monitoring_bucket=env.monitoring_bucket,
        state_table=env.monitor_table,
    )
    window_id = str(event.get("window_id") or event.get("time") or context.aws_request_id)
    result = monitor.run_window(settings, platform, window_id)
    if not result.replayed:
        _emit(result)
    detail = asdict(result)
    logger.info("monitor window", extra={k: v for k, v in detail.items() if k != "metrics"})
    return detail


def _emit(result: monitor.WindowResult) -> None:
    """The window's figures: per endpoint and model version; drift scores also per feature; the alarmed
    ones also per endpoint alone."""
    metrics.add_dimension("endpoint", result.endpoint)
    metrics.add_dimension("model_version", str(result.model_version))
    for name, value in result.metrics.items():
        if name.startswith("drift_score:"):
            continue
        unit = MetricUnit.NoUnit if name.endswith("share") else MetricUnit.Count
        metrics.add_metric(name=name, unit=unit, value=value)
    for name, value in result.metrics.items():
        if not name.startswith("drift_score:"):
            continue
        with single_metric(
            name="drift_score", unit=MetricUnit.NoUnit, value=value, namespace=NAMESPACE
        ) as one:
            one.add_dimension("endpoint", result.endpoint)
            one.add_dimension("model_version", str(result.model_version))
            one.add_dimension("feature", name.split(":", 1)[1])
    for name in ALARMED:
        if name in result.metrics:
            with single_metric(
                name=name, unit=MetricUnit.NoUnit, value=result.metrics[name], namespace=NAMESPACE
            ) as one:
                one.add_dimension("endpoint", result.endpoint)
