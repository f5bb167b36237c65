from __future__ import annotations

from tests.infra.synthesized import Synthesized


def test_failed_training_alarms_to_the_alerts_topic(synthesized: Synthesized) -> None:
    monitoring = synthesized.stack.monitoring
    alarm = synthesized.resources("AWS::CloudWatch::Alarm")[
        synthesized.logical_id(monitoring.training_failed)
    ]
    props = alarm["Properties"]
    assert props["AlarmActions"] == [{"Ref": synthesized.logical_id(synthesized.stack.alerting.alerts)}]
    metric_names = {m["MetricStat"]["Metric"]["MetricName"] for m in props["Metrics"] if "MetricStat" in m}
    assert metric_names == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert props["TreatMissingData"] == "notBreaching"


def test_large_upload_failures_alarm_too(synthesized: Synthesized) -> None:
    alarm = synthesized.stack.monitoring.executions_failed["LargeUploads"]
    props = synthesized.resources("AWS::CloudWatch::Alarm")[synthesized.logical_id(alarm)]["Properties"]
    assert props["AlarmActions"] == [{"Ref": synthesized.logical_id(synthesized.stack.alerting.alerts)}]


def test_every_function_has_an_error_alarm_and_there_is_a_dashboard(synthesized: Synthesized) -> None:
    functions = synthesized.resources("AWS::Lambda::Function")
    ours = [f for f in functions.values() if str(f["Properties"].get("Handler", "")).startswith("functions.")]
    assert len(synthesized.stack.monitoring.function_errors) == len(ours) == 15
    _, dashboard = synthesized.one("AWS::CloudWatch::Dashboard")
    assert dashboard["Properties"]["DashboardName"] == f"{synthesized.settings.prefix}-health"
