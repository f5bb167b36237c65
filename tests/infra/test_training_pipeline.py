"""The polled training state machine: the same definition runs in AWS and in moto."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest

from infra.images import SKLEARN_REGISTRIES, sklearn_image_uri
from infra.training_pipeline import training_job_name_prefix
from mlcycle.config import Settings
from mlcycle.example.churn import default_problem
from tests.infra.conftest import Synthesized, definition


@pytest.fixture(scope="module")
def states(synthesized: Synthesized) -> dict[str, Any]:
    parsed: dict[str, Any] = definition(synthesized)["States"]
    return parsed


def test_states_follow_the_contract(synthesized: Synthesized, states: dict[str, Any]) -> None:
    assert definition(synthesized)["StartAt"] == "BuildTrainingSet"
    assert states["BuildTrainingSet"]["Next"] == "TrainModel"
    assert states["TrainModel"]["Next"] == "WaitForTraining"
    assert states["WaitForTraining"] == {
        "Type": "Wait",
        "SecondsPath": "$.training_set.poll_seconds",
        "Next": "DescribeTrainingJob",
    }
    assert states["DescribeTrainingJob"]["Next"] == "TrainingDone?"
    choices = {c["StringEquals"]: c["Next"] for c in states["TrainingDone?"]["Choices"]}
    assert choices == {
        "Completed": "RegisterModel",
        "Failed": "DescribeFailure",
        "Stopped": "TrainingStopped",
    }
    assert states["TrainingDone?"]["Default"] == "WaitForTraining"
    assert states["RegisterModel"]["Next"] == "Registered"
    assert states["Registered"] == {"Type": "Succeed"}


def test_no_sync_integrations(synthesized: Synthesized) -> None:
    _, machine = synthesized.one("AWS::StepFunctions::StateMachine")
    assert ".sync" not in json.dumps(machine["Properties"]["DefinitionString"])


def test_train_model_creates_the_job_request_response(
    states: dict[str, Any], infra_settings: Settings
) -> None:
    train = states["TrainModel"]
    assert train["Resource"] == "arn:<token>:states:::sagemaker:createTrainingJob"
    params = train["Parameters"]
    assert params["TrainingJobName.$"] == f"States.Format('{infra_settings.prefix}-{{}}', $$.Execution.Name)"
    assert [c["ChannelName"] for c in params["InputDataConfig"]] == ["train", "test"]
    for channel in params["InputDataConfig"]:
        assert channel["ContentType"] == "application/x-parquet"
        source = channel["DataSource"]["S3DataSource"]
        assert source == {"S3Uri.$": f"$.training_set.{channel['ChannelName']}_uri", "S3DataType": "S3Prefix"}
    assert params["OutputDataConfig"]["S3OutputPath"] == "s3://<token>/training-jobs/"
    assert params["ResourceConfig"]["InstanceType"] == infra_settings.instances.training
    assert params["ResourceConfig"]["VolumeKmsKeyId"] == "<token>"
    assert params["StoppingCondition"]["MaxRuntimeInSeconds"] > 0
    image = params["AlgorithmSpecification"]["TrainingImage"]
    assert image.endswith(f"/sagemaker-scikit-learn:{infra_settings.sklearn_version}-cpu-py3")


def test_hyperparameters(states: dict[str, Any], infra_settings: Settings) -> None:
    hps = states["TrainModel"]["Parameters"]["HyperParameters"]
    assert hps["sagemaker_program"] == "train.py"
    assert hps["sagemaker_submit_directory"] == "<token>"  # s3:// URL of the sourcedir.tar.gz asset
    assert hps["sagemaker_region"] == "<token>"
    assert json.loads(hps["mlcycle_problem"]) == json.loads(infra_settings.problem.model_dump_json())


def test_polling_describes_the_job_keeping_only_what_is_needed(states: dict[str, Any]) -> None:
    for name, selector in (
        ("DescribeTrainingJob", {"Status.$": "$.TrainingJobStatus"}),
        ("DescribeFailure", {"FailureReason.$": "$.FailureReason"}),
    ):
        state = states[name]
        assert state["Resource"] == "arn:<token>:states:::aws-sdk:sagemaker:describeTrainingJob"
        assert state["ResultSelector"] == selector
        assert state["Parameters"]["TrainingJobName.$"].startswith("States.Format(")


def test_failure_ends_in_fail_with_the_job_reason(states: dict[str, Any]) -> None:
    assert states["DescribeFailure"]["Next"] == "TrainingFailed"
    assert states["TrainingFailed"] == {
        "Type": "Fail",
        "Error": "TrainingJobFailed",
        "CausePath": "$.failure.FailureReason",
    }
    assert states["TrainingStopped"]["Type"] == "Fail"


def test_lambda_tasks_pass_what_the_handlers_expect(states: dict[str, Any]) -> None:
    build = states["BuildTrainingSet"]
    assert build["Parameters"] == {"execution_name.$": "$$.Execution.Name", "input.$": "$"}
    assert build["ResultPath"] == "$.training_set"
    register = states["RegisterModel"]["Parameters"]
    assert register["training_set.$"] == "$.training_set"
    assert register["training_job_name.$"].startswith("States.Format(")
    for name in ("BuildTrainingSet", "RegisterModel"):
        errors = states[name]["Retry"][0]["ErrorEquals"]
        assert "Lambda.ServiceException" in errors


def test_state_machine_logs_and_traces(synthesized: Synthesized) -> None:
    _, machine = synthesized.one("AWS::StepFunctions::StateMachine")
    props = machine["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False


def test_sagemaker_role_has_no_account_wide_s3_access(synthesized: Synthesized) -> None:
    role_id = synthesized.logical_id(synthesized.stack.training.sagemaker_role)
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if statement["Resource"] == "*":
                assert actions == ["cloudwatch:PutMetricData"]


def test_job_names_fit_sagemaker_limit() -> None:
    longest = Settings(project="p" * 21, stage="s" * 10, problem=default_problem())
    # Executions started without a name (EventBridge, the CLI) are named with a 36-character UUID.
    assert len(training_job_name_prefix(longest)) + 1 + 36 <= 63


def test_image_uri_for_a_concrete_region() -> None:
    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="111111111111", region="eu-west-1"))
    uri = sklearn_image_uri(stack, "1.9-0")
    account = SKLEARN_REGISTRIES["eu-west-1"]
    assert uri.startswith(f"{account}.dkr.ecr.eu-west-1.")  # then AWS::URLSuffix, for the China regions
    assert uri.endswith("/sagemaker-scikit-learn:1.9-0-cpu-py3")


def test_env_agnostic_image_uri_uses_a_region_mapping(synthesized: Synthesized) -> None:
    mapping = synthesized.template.to_json()["Mappings"]["SklearnImageRegistries"]
    assert mapping["us-east-1"] == {"account": "683313688378"}
