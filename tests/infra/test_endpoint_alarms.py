"""The endpoint's SLO alarms, and the deploy function that names them as rollback alarms."""

from __future__ import annotations

from tests.infra.synthesized import Synthesized, function_by_handler


def test_error_rate_and_latency_alarms_watch_the_production_variant(synthesized: Synthesized) -> None:
    settings = synthesized.settings
    alarms = synthesized.stack.endpoint_alarms
    error = synthesized.properties(alarms.error_rate)
    latency = synthesized.properties(alarms.latency)
    dimensions = [
        {"Name": "EndpointName", "Value": settings.endpoint_name},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    # the error rate: 5xx over invocations, by metric math
    assert error["Threshold"] == settings.serving.max_error_rate
    assert [q["Expression"] for q in error["Metrics"] if "Expression" in q] == ["errors / invocations"]
    stats = [q["MetricStat"] for q in error["Metrics"] if "MetricStat" in q]
    assert {s["Metric"]["MetricName"] for s in stats} == {"Invocation5XXErrors", "Invocations"}
    assert all(s["Metric"]["Dimensions"] == dimensions and s["Stat"] == "Sum" for s in stats)
    # the latency: p99 ModelLatency in microseconds
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("ModelLatency", "p99")
    assert latency["Threshold"] == settings.serving.latency_p99_ms * 1000
    assert latency["Dimensions"] == dimensions
    for props in (error, latency):
        assert props["TreatMissingData"] == "notBreaching"
        assert props["EvaluationPeriods"] == settings.serving.alarm_evaluation_periods
        assert props["AlarmActions"] and props["OKActions"]  # they alert, and say when it is over


def test_the_deploy_function_names_the_rollback_alarms(synthesized: Synthesized) -> None:
    variables = function_by_handler(synthesized, "functions.deploy_model.handler")["Properties"][
        "Environment"
    ]["Variables"]
    names = variables["MLCYCLE_ROLLBACK_ALARMS"]
    alarms = synthesized.stack.endpoint_alarms
    refs = [{"Ref": synthesized.logical_id(a)} for a in (alarms.error_rate, alarms.latency)]
    assert names == {"Fn::Join": ["", [refs[0], ",", refs[1]]]}
