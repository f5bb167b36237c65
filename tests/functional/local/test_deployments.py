"""Deployment guardrails on the embedded AWS: a blue/green update shifts traffic under its DeploymentConfig,
and a rollback alarm, evaluated from the metrics the endpoint publishes, takes a bad model back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mlcycle import deployment
from mlcycle.config import DeploymentPolicy, Settings
from mlcycle.local.sagemaker import endpoints
from mlcycle.names import ENDPOINT_STATE_CHANGE
from tests.functional.local import conftest_sagemaker
from tests.functional.local.conftest import unique
from tests.functional.local.conftest_sagemaker import (
    FIXTURES,
    SageMakerWorld,
    TrainedJob,
    create_endpoint_config,
    create_model,
    tar_gz,
    wait_for_endpoint,
)
from tests.functional.local.test_endpoints import _joblib_bytes, _predict

# The shared fixtures, bound here so pytest finds them (as test_endpoints does).
sm_world = conftest_sagemaker.sm_world
trained_job = conftest_sagemaker.trained_job

Client = Any


def _error_rate_alarm(aws_client: Client, endpoint: str) -> str:
    name = unique("error-rate")
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]

    def query(metric: str, id_: str) -> dict[str, Any]:
        stat = {
            "Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric, "Dimensions": dims},
            "Period": 10,
            "Stat": "Sum",
        }
        return {"Id": id_, "MetricStat": stat, "ReturnData": False}

    aws_client("cloudwatch").put_metric_alarm(
        AlarmName=name,
        Metrics=[
            {"Id": "rate", "Expression": "errors / calls", "ReturnData": True},
            query("Invocation5XXErrors", "errors"),
            query("Invocations", "calls"),
        ],
        EvaluationPeriods=1,
        Threshold=0.05,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    return name


@pytest.fixture
def traffic(aws_client: Client, sm_world: SageMakerWorld) -> Iterator[Any]:
    """Invokes an endpoint in a loop, as clients would, counting answers and model errors."""
    stop = threading.Event()
    counts = {"ok": 0, "model_errors": 0}

    def run(name: str) -> None:
        runtime = aws_client("sagemaker-runtime")
        body = "\n".join(",".join(map(str, row)) for row in sm_world.features[:3].tolist())
        while not stop.is_set():
            try:
                runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=body)["Body"].read()
                counts["ok"] += 1
            except runtime.exceptions.ModelError:
                counts["model_errors"] += 1
            time.sleep(0.02)

    threads: list[threading.Thread] = []

    def start(name: str) -> dict[str, int]:
        thread = threading.Thread(target=run, args=(name,), daemon=True)
        thread.start()
        threads.append(thread)
        return counts

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


def _serving(
    aws_client: Client, sm_world: SageMakerWorld, trained_job: TrainedJob, wait_for: Any, name: str = ""
) -> tuple[str, str]:
    name = name or unique("guarded")
    first = create_endpoint_config(
        aws_client, {"AllTraffic": create_model(aws_client, trained_job.model_data)}
    )
    aws_client("sagemaker").create_endpoint(EndpointName=name, EndpointConfigName=first)
    wait_for_endpoint(aws_client, wait_for, name)
    return name, first


def _model(aws_client: Client, sm_world: SageMakerWorld, code: str) -> str:
    """A challenger: a model of the same data, served by the handlers in ``code``."""
    from sklearn.linear_model import LogisticRegression

    key = f"models/{unique('challenger')}/model.tar.gz"
    estimator = LogisticRegression().fit(sm_world.features, sm_world.labels)
    body = tar_gz(
        {"model.joblib": _joblib_bytes(estimator), "code/inference.py": (FIXTURES / code).read_bytes()}
    )
    aws_client("s3").put_object(Bucket=sm_world.bucket, Key=key, Body=body)
    return create_model(aws_client, f"s3://{sm_world.bucket}/{key}")


def _state_changes(aws_client: Client) -> Any:
    """SageMaker's endpoint state change events, caught by a rule into a queue."""
    sqs, events = aws_client("sqs"), aws_client("events")
    queue = sqs.create_queue(QueueName=unique("endpoint-states"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = unique("endpoint-states")
    pattern = {"source": ["aws.sagemaker"], "detail-type": [ENDPOINT_STATE_CHANGE]}
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])

    def read() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return [json.loads(m["Body"])["detail"] for m in messages.get("Messages", [])]

    return read


def test_a_canary_of_a_broken_model_is_rolled_back_by_its_alarm(
    trained_job: TrainedJob,
    sm_world: SageMakerWorld,
    aws_client: Client,
    wait_for: Any,
    traffic: Any,
    settings: Settings,
) -> None:
    sagemaker = aws_client("sagemaker")
    guarded = settings.model_copy(update={"project": "guard", "stage": unique("s").replace("-", "")[:10]})
    states = _state_changes(aws_client)
    # GIVEN an endpoint serving a good model, under traffic, with an error-rate alarm on it
    name, first = _serving(aws_client, sm_world, trained_job, wait_for, guarded.endpoint_name)
    alarm = _error_rate_alarm(aws_client, name)
    counts = traffic(name)
    before = _predict(aws_client, name, sm_world.features[:5])["predictions"]
    # WHEN a model that fails every prediction is deployed as a canary with that alarm for rollback
    broken = create_endpoint_config(
        aws_client, {"AllTraffic": _model(aws_client, sm_world, "failing_inference.py")}
    )
    arn = sagemaker.update_endpoint(
        EndpointName=name,
        EndpointConfigName=broken,
        DeploymentConfig=deployment.deployment_config(
            DeploymentPolicy(
                strategy="canary", canary_percent=30, wait_seconds=60, termination_wait_seconds=0
            ),
            [alarm],
        ),
    )["EndpointArn"]
    sagemaker.add_tags(
        ResourceArn=arn, Tags=[{"Key": deployment.REQUESTED_TAG, "Value": broken}]
    )  # as deploy() does
    # THEN the canary's errors fire the alarm, which rolls the deployment back long before its bake ends
    endpoint = wait_for_endpoint(aws_client, wait_for, name, timeout=50)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", first)
    assert alarm in endpoint["FailureReason"]
    assert (
        aws_client("cloudwatch").describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"]
        == "ALARM"
    )
    assert counts["model_errors"] > 0 and counts["ok"] > counts["model_errors"]  # only the canary failed
    # AND the previous model serves every request again, the broken fleet is gone
    assert _predict(aws_client, name, sm_world.features[:5])["predictions"] == before
    live = endpoints.endpoints_state().live
    assert all(e.green is None for e in live.values())
    # AND SageMaker's state change says so, from which the platform concludes the rollback, naming the alarm
    ended = wait_for(
        lambda: [d for d in states() if d["EndpointName"] == name and d.get("FailureReason")],
        what="the state change",
    )
    result = deployment.outcome(guarded, ended[-1], sagemaker=sagemaker)
    assert result is not None and (result.outcome, result.alarm) == ("rolled_back", alarm)
    assert deployment.outcome(guarded, ended[-1], sagemaker=sagemaker) is None  # concluded once


def test_a_good_model_completes_a_linear_rollout(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client, wait_for: Any, traffic: Any
) -> None:
    sagemaker = aws_client("sagemaker")
    name, _ = _serving(aws_client, sm_world, trained_job, wait_for)
    alarm = _error_rate_alarm(aws_client, name)
    counts = traffic(name)
    good = create_endpoint_config(aws_client, {"AllTraffic": _model(aws_client, sm_world, "inference.py")})
    sagemaker.update_endpoint(
        EndpointName=name,
        EndpointConfigName=good,
        DeploymentConfig=deployment.deployment_config(
            DeploymentPolicy(
                strategy="linear", linear_step_percent=50, wait_seconds=2, termination_wait_seconds=1
            ),
            [alarm],
        ),
    )
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
    endpoint = wait_for_endpoint(aws_client, wait_for, name, timeout=60)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", good)
    assert "FailureReason" not in endpoint or not endpoint["FailureReason"]
    assert counts["model_errors"] == 0 and counts["ok"] > 0
    # AND the endpoint published SageMaker's metrics for every invocation
    answered = counts["ok"]  # before the query: each answer counted was published before it returned
    stats = aws_client("cloudwatch").get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=[{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}],
        StartTime=time.time() - 300,
        EndTime=time.time() + 60,
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    assert sum(d["Sum"] for d in stats) >= answered
