"""The embedded AWS turns EMF log lines into metric datapoints, as CloudWatch does."""

from __future__ import annotations

import json

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from mlcycle.local.cloudwatch import emf


def test_a_powertools_emf_line_becomes_its_datapoints() -> None:
    # GIVEN what Powertools Metrics writes for a metric with two dimensions
    metrics = Metrics(namespace="mlcycle/monitoring", service="monitor")
    metrics.add_dimension("endpoint", "e1")
    metrics.add_metric(name="drifted_feature_share", unit=MetricUnit.NoUnit, value=0.75)
    line = json.dumps(metrics.serialize_metric_set())
    metrics.clear_metrics()
    # WHEN the log line is read, THEN one datapoint per metric, with the line's dimensions
    [(namespace, datum)] = emf.datapoints(f"2026-11-28T10:00:00Z request-id {line}")
    assert namespace == "mlcycle/monitoring"
    assert (datum["MetricName"], datum["Value"]) == ("drifted_feature_share", 0.75)
    assert {d["Name"]: d["Value"] for d in datum["Dimensions"]} == {"endpoint": "e1", "service": "monitor"}


def test_lines_that_are_not_emf_give_nothing() -> None:
    assert emf.datapoints("START RequestId: x") == []
    assert emf.datapoints('{"level": "INFO", "message": "monitor window"}') == []
    assert emf.datapoints('{"_aws": not json') == []
