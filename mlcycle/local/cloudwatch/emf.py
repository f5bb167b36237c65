"""CloudWatch's embedded metric format (EMF) in the embedded AWS: metrics from log lines.

In AWS, a Lambda's log line that is a JSON object with an ``_aws.CloudWatchMetrics`` directive becomes
metric datapoints (namespace, one datapoint per metric per dimension set, the values under the metric
names, the dimensions' values under their names, the time from ``_aws.Timestamp``). The embedded Lambda
runner passes each invocation's log here, so alarms on such metrics (the monitors' drift share, say) are
evaluated locally as they are in AWS.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mlcycle.local import faults


def datapoints(line: str) -> list[tuple[str, dict[str, Any]]]:
    """``(namespace, datum)`` pairs of one log line; none when it is not EMF."""
    text = line[line.find("{") :] if "{" in line else ""
    if '"_aws"' not in text:
        return []
    try:
        blob = json.loads(text)
    except ValueError:
        return []
    meta = blob.get("_aws") if isinstance(blob, dict) else None
    if not isinstance(meta, dict):
        return []
    when = datetime.fromtimestamp(float(meta.get("Timestamp", 0)) / 1000, UTC)
    out = []
    for directive in meta.get("CloudWatchMetrics", []):
        for dimension_set in directive.get("Dimensions", [[]]):
            dims = [{"Name": n, "Value": str(blob[n])} for n in dimension_set if n in blob]
            for metric in directive.get("Metrics", []):
                value = blob.get(metric["Name"])
                values = value if isinstance(value, list) else [value]
                for one in values:
                    if isinstance(one, int | float):
                        datum = {"MetricName": metric["Name"], "Value": float(one), "Timestamp": when}
                        datum |= {"Dimensions": dims, "Unit": metric.get("Unit", "None")}
                        out.append((str(directive["Namespace"]), datum))
    return out


def publish(account: str, region: str, log_text: str) -> int:
    """Put the EMF datapoints of an invocation's log into CloudWatch; returns how many."""
    from moto.cloudwatch.models import cloudwatch_backends

    found = [point for line in log_text.splitlines() for point in datapoints(line)]
    backend = cloudwatch_backends[account][region]
    for namespace, datum in found:
        try:
            backend.put_metric_data(namespace, [datum])
        except Exception as error:  # CloudWatch drops a malformed datapoint too; here it is kept as a fault
            faults.record(f"EMF datapoint {datum.get('MetricName')} in {namespace} was not stored", error)
    return len(found)
