"""Shadow mode on the embedded AWS: a challenger as the endpoint's shadow variant gets a copy of live
traffic, never answers it, is captured and measured under its own name, and mlcycle.shadow compares it
with the champion; rejecting it returns the endpoint to the champion alone."""

from __future__ import annotations

import io
from typing import Any

import joblib
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlcycle import deployment, shadow
from mlcycle.config import Settings, ShadowSettings
from mlcycle.local.sagemaker import endpoints
from tests.functional.local import conftest_sagemaker
from tests.functional.local.conftest_sagemaker import (
    FIXTURES,
    ROLE,
    Client,
    SageMakerWorld,
    TrainedJob,
    create_endpoint_config,
    create_model,
    read_tar,
    tar_gz,
    unique,
    wait_for_endpoint,
)
from tests.functional.local.test_endpoints import _csv, _joblib_bytes

sm_world = conftest_sagemaker.sm_world
trained_job = conftest_sagemaker.trained_job

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0"


def _package(aws_client: Client, world: SageMakerWorld, group: str, estimator: Any, code: str) -> str:
    """A registered challenger: ``estimator`` served by the fixture handlers in ``code``."""
    key = f"models/{unique('shadow')}/model.tar.gz"
    files = {"model.joblib": _joblib_bytes(estimator), "code/inference.py": (FIXTURES / code).read_bytes()}
    aws_client("s3").put_object(Bucket=world.bucket, Key=key, Body=tar_gz(files))
    container = {
        "Image": IMAGE,
        "ModelDataUrl": f"s3://{world.bucket}/{key}",
        "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        },
    }
    created = aws_client("sagemaker").create_model_package(
        ModelPackageGroupName=group,
        InferenceSpecification={
            "Containers": [container],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus="PendingManualApproval",
    )
    return str(created["ModelPackageArn"])


def _send(aws_client: Client, settings: Settings, world: SageMakerWorld, count: int, tag: str) -> list[str]:
    """``count`` requests with inference ids; the variants that answered them."""
    runtime = aws_client("sagemaker-runtime")
    answered = []
    for i in range(count):
        response = runtime.invoke_endpoint(
            EndpointName=settings.endpoint_name,
            Body=_csv(world.features[i * 3 : i * 3 + 3]),
            ContentType="text/csv",
            InferenceId=f"{tag}-{i}",
        )
        response["Body"].read()
        answered.append(response["InvokedProductionVariant"])
    return answered


def _wait_in_service(aws_client: Client, settings: Settings, wait_for: Any, config: str) -> dict[str, Any]:
    sagemaker = aws_client("sagemaker")

    def ready() -> dict[str, Any] | None:
        found = sagemaker.describe_endpoint(EndpointName=settings.endpoint_name)
        done = found["EndpointStatus"] == "InService" and found["EndpointConfigName"] == config
        return dict(found) if done else None

    result: dict[str, Any] = wait_for(ready, timeout=60, what=f"endpoint serving {config}")
    return result


def _comparison(
    aws_client: Client, settings: Settings, world: SageMakerWorld, wait_for: Any, copies: int
) -> Any:
    def compared() -> Any:
        endpoints.flush_capture()
        found = shadow.compare(
            settings,
            sagemaker=aws_client("sagemaker"),
            s3=aws_client("s3"),
            cloudwatch=aws_client("cloudwatch"),
            capture_uri=f"s3://{world.bucket}/capture",
        )
        return found if found.shadow.answers >= copies else None

    return wait_for(compared, timeout=30, what=f"{copies} shadow answers captured")


def test_a_shadow_gets_a_copy_of_traffic_and_is_compared_with_the_champion(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client, wait_for: Any, settings: Settings
) -> None:
    chosen = settings.model_copy(
        update={
            "project": "shadow",
            "stage": unique("s").replace("-", "")[:10],
            "serving": settings.serving.model_copy(update={"shadow": ShadowSettings(traffic_percent=100)}),
        }
    )
    sagemaker = aws_client("sagemaker")
    group = unique("shadow-group")
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    # GIVEN the champion serving with data capture
    champion = create_endpoint_config(
        aws_client,
        {"AllTraffic": create_model(aws_client, trained_job.model_data)},
        capture_uri=f"s3://{sm_world.bucket}/capture",
    )
    sagemaker.create_endpoint(EndpointName=chosen.endpoint_name, EndpointConfigName=champion)
    wait_for_endpoint(aws_client, wait_for, chosen.endpoint_name)
    # WHEN a challenger awaiting review is shadowed
    tree = DecisionTreeClassifier(max_depth=2).fit(sm_world.features, sm_world.labels)
    challenger = _package(aws_client, sm_world, group, tree, "inference.py")
    started = shadow.deploy_shadow(chosen, challenger, sagemaker=sagemaker, role_arn=ROLE)
    assert started is not None and started.action == "shadowing"
    described = _wait_in_service(aws_client, chosen, wait_for, started.endpoint_config_name)
    variant = shadow.shadow_variant(challenger)
    assert [v["VariantName"] for v in described["ShadowProductionVariants"]] == [variant]
    config = sagemaker.describe_endpoint_config(EndpointConfigName=started.endpoint_config_name)
    assert config["ShadowProductionVariants"][0]["VariantName"] == variant
    # AND live traffic arrives
    answered = _send(aws_client, chosen, sm_world, 20, "copy")
    # THEN the champion answered every request, and the shadow got a copy of each
    assert set(answered) == {"AllTraffic"}
    comparison = _comparison(aws_client, chosen, sm_world, wait_for, 20)
    assert comparison.shadow_package == challenger
    assert comparison.paired_requests == 20 and comparison.rows == 60
    expected = (
        trained_job_predictions(aws_client, trained_job, sm_world) == tree.predict(sm_world.features[:60])
    ).mean()
    assert comparison.agreement == pytest.approx(expected)
    assert comparison.mean_probability_gap is not None and comparison.mean_probability_gap > 0
    assert comparison.shadow.failures == 0, comparison
    assert comparison.shadow.latency_ms_avg is not None, aws_client("cloudwatch").list_metrics(
        Namespace="AWS/SageMaker"
    )
    assert comparison.production.invocations >= 20
    assert any("agreement" in line for line in comparison.lines())

    # WHEN a challenger whose every prediction fails replaces it as the shadow
    broken = _package(
        aws_client,
        sm_world,
        group,
        LogisticRegression().fit(sm_world.features, sm_world.labels),
        "failing_inference.py",
    )
    replaced = shadow.deploy_shadow(chosen, broken, sagemaker=sagemaker, role_arn=ROLE)
    assert replaced is not None
    _wait_in_service(aws_client, chosen, wait_for, replaced.endpoint_config_name)
    # THEN callers never see its failures; the comparison counts them
    assert set(_send(aws_client, chosen, sm_world, 10, "broken")) == {"AllTraffic"}
    failing = _comparison(aws_client, chosen, sm_world, wait_for, 10)
    assert failing.shadow.failures == failing.shadow.answers >= 10 and failing.agreement is None
    # AND its config was added to the champion's, not to the earlier shadow's
    assert deployment.production_config(sagemaker, replaced.endpoint_config_name) == champion

    # WHEN it is rejected, THEN the endpoint returns to the champion alone
    ended = shadow.end_shadow(chosen, broken, sagemaker=sagemaker)
    assert ended is not None and ended.endpoint_config_name == champion
    back = _wait_in_service(aws_client, chosen, wait_for, champion)
    assert not back.get("ShadowProductionVariants")
    assert shadow.shadowed_package(sagemaker, chosen) is None
    sagemaker.delete_endpoint(EndpointName=chosen.endpoint_name)


def trained_job_predictions(aws_client: Client, trained_job: TrainedJob, world: SageMakerWorld) -> Any:
    """What the champion predicts for the rows the requests sent."""
    model = joblib.load(io.BytesIO(read_tar(aws_client("s3"), trained_job.model_data)["model.joblib"]))
    return model.predict(world.features[:60])
