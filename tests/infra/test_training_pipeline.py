"""The polled training state machine: the same definition runs in AWS and in moto."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest

from infra.images import SKLEARN_REGISTRIES, sklearn_image_uri
from infra.training_jobs import training_job_name_prefix
from infra.training_pipeline import TrainingPipeline
from mlcycle.config import Settings
from mlcycle.example.churn import default_problem
from tests.infra.bare import arn, bare_stack, granted, grantee, siblings
from tests.infra.synthesized import Synthesized, definition


@pytest.fixture(scope="module")
def states(synthesized: Synthesized) -> dict[str, Any]:
    parsed: dict[str, Any] = definition(synthesized)["States"]
    return parsed


def test_states_follow_the_contract(synthesized: Synthesized, states: dict[str, Any]) -> None:
    assert definition(synthesized)["StartAt"] == "ValidateRun"
    chain = ["ValidateRun", "BuildTrainingSet", "TrainModel", "WaitForTraining", "DescribeTrainingJob"]
    assert [states[name]["Next"] for name in chain[:-1]] == chain[1:]
    assert states["WaitForTraining"]["SecondsPath"] == "$.run.poll_seconds"
    for kind, completed in (("Training", "EvaluateModel"), ("Evaluation", "CheckModelTests")):
        choices = {c["StringEquals"]: c["Next"] for c in states[f"{kind}Done?"]["Choices"]}
        assert choices == {
            "Completed": completed,
            "Failed": f"Describe{kind}Failure",
            "Stopped": f"{kind}Stopped",
        }
        assert states[f"{kind}Done?"]["Default"] == f"WaitFor{kind}"
    assert states["EvaluateModel"]["Next"] == "WaitForEvaluation"
    assert states["CheckModelTests"]["Next"] == "ModelTestsPassed?"
    gate = states["ModelTestsPassed?"]
    assert gate["Choices"] == [
        {"Variable": "$.model_tests.passed", "BooleanEquals": True, "Next": "RegisterModel"}
    ]
    assert gate["Default"] == "ModelTestsFailed"
    assert states["RegisterModel"]["Next"] == "ApprovalDecision"
    assert {states[c["Next"]]["Type"] for c in states["ApprovalDecision"]["Choices"]} == {"Succeed"}
    assert states["AwaitingReview"] == {"Type": "Succeed"}


def test_every_task_catches_into_the_failure_report(states: dict[str, Any]) -> None:
    tasks = [name for name, s in states.items() if s["Type"] == "Task" and name != "ReportFailure"]
    assert len(tasks) == 10
    for name in tasks:
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ReportFailure"}
        ], name
    for name in (
        "DescribeTrainingFailure",
        "TrainingStopped",
        "DescribeEvaluationFailure",
        "EvaluationStopped",
    ):
        assert states[name]["Next"] == "ReportFailure"
    assert states["ModelTestsFailed"]["Parameters"] == {
        "Error": "ModelTestsFailed",
        "Cause.$": "$.model_tests.summary",
    }
    report = states["ReportFailure"]
    assert report["Parameters"]["error.$"] == "$.error.Error"
    assert report["Next"] == "PipelineFailed" and report["Catch"][0]["Next"] == "PipelineFailed"
    assert states["PipelineFailed"] == {
        "Type": "Fail",
        "ErrorPath": "$.error.Error",
        "CausePath": "$.error.Cause",
    }


def test_sagemaker_calls_retry_transient_errors(states: dict[str, Any]) -> None:
    for name in ("TrainModel", "DescribeTrainingJob", "EvaluateModel", "DescribeEvaluationJob"):
        retry = states[name]["Retry"][0]
        assert "SageMaker.ThrottlingException" in retry["ErrorEquals"], name
        assert "sagemaker.sagemakerException" in retry["ErrorEquals"], name  # how moto names it
        assert retry["MaxAttempts"] == 3


def test_evaluation_is_a_processing_job_on_the_sourcedir(
    states: dict[str, Any], infra_settings: Settings
) -> None:
    evaluate = states["EvaluateModel"]
    assert evaluate["Resource"] == "arn:<token>:states:::aws-sdk:sagemaker:createProcessingJob"
    params = evaluate["Parameters"]
    assert params["ProcessingJobName.$"].startswith("States.Format(")
    app = params["AppSpecification"]
    assert (
        app["ContainerEntrypoint"][:2] == ["python3", "-c"]
        and app["ContainerEntrypoint"][-1] == "evaluate.py"
    )
    assert all(len(item) <= 256 for item in app["ContainerEntrypoint"] + app["ContainerArguments"])
    inputs = {i["InputName"]: i["S3Input"] for i in params["ProcessingInputs"]}
    assert list(inputs) == ["code", "model", "train", "test", "run"]
    assert inputs["model"]["S3Uri.$"].endswith("-{}/output/model.tar.gz', $$.Execution.Name)")
    assert inputs["run"]["S3Uri.$"] == "$.run.run_prefix"
    output = params["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]
    assert output["S3Uri.$"].endswith("-{}/evaluation', $$.Execution.Name)")
    assert (
        params["ProcessingResources"]["ClusterConfig"]["InstanceType"] == infra_settings.instances.processing
    )


def test_no_sync_integrations(synthesized: Synthesized) -> None:
    machine = {"Properties": synthesized.properties(synthesized.stack.training.state_machine)}
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
    assert json.loads(hps["mlcycle_tests"]) == json.loads(infra_settings.model_tests.model_dump_json())


def test_polling_describes_the_jobs_keeping_only_what_is_needed(states: dict[str, Any]) -> None:
    for name, action, selector in (
        ("DescribeTrainingJob", "describeTrainingJob", {"Status.$": "$.TrainingJobStatus"}),
        (
            "DescribeTrainingFailure",
            "describeTrainingJob",
            {"Error": "TrainingJobFailed", "Cause.$": "$.FailureReason"},
        ),
        ("DescribeEvaluationJob", "describeProcessingJob", {"Status.$": "$.ProcessingJobStatus"}),
        (
            "DescribeEvaluationFailure",
            "describeProcessingJob",
            {"Error": "EvaluationJobFailed", "Cause.$": "$.FailureReason"},
        ),
    ):
        state = states[name]
        assert state["Resource"] == f"arn:<token>:states:::aws-sdk:sagemaker:{action}"
        assert state["ResultSelector"] == selector


def test_lambda_tasks_pass_what_the_handlers_expect(states: dict[str, Any]) -> None:
    for name, result in (("ValidateRun", "$.run"), ("BuildTrainingSet", "$.training_set")):
        assert states[name]["Parameters"] == {"execution_name.$": "$$.Execution.Name", "input.$": "$"}
        assert states[name]["ResultPath"] == result
    register = states["RegisterModel"]["Parameters"]
    assert register["training_set.$"] == "$.training_set"
    assert register["fault_injection.$"] == "$.run.fault_injection"  # what ValidateRun returned
    assert register["training_job_name.$"].startswith("States.Format(")
    assert register["evaluation_prefix.$"] == states["CheckModelTests"]["Parameters"]["evaluation_prefix.$"]
    for name in ("ValidateRun", "BuildTrainingSet", "CheckModelTests", "RegisterModel", "ReportFailure"):
        errors = states[name]["Retry"][0]["ErrorEquals"]
        assert "Lambda.ServiceException" in errors


def test_state_machine_logs_and_traces(synthesized: Synthesized) -> None:
    machine = {"Properties": synthesized.properties(synthesized.stack.training.state_machine)}
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


def test_the_state_machine_may_pass_the_sagemaker_role_to_its_jobs(synthesized: Synthesized) -> None:
    training = synthesized.stack.training
    machine_role = synthesized.logical_id(training.state_machine.role)
    passed = [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": machine_role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Action"] == "iam:PassRole"
    ]
    # The training task's grant (to SageMaker only) and the role's own grant (the evaluation's job).
    sagemaker_role = {"Fn::GetAtt": [synthesized.logical_id(training.sagemaker_role), "Arn"]}
    assert passed and all(statement["Resource"] == sagemaker_role for statement in passed)
    assert any("Condition" not in statement for statement in passed)


def test_grant_describe_training_jobs_covers_the_pipeline_s_jobs_only(infra_settings: Settings) -> None:
    # GIVEN the training pipeline in a stack with only what it needs, and a role
    stack = bare_stack()
    shared = siblings(stack, infra_settings)
    training = TrainingPipeline(
        stack,
        "Training",
        settings=infra_settings,
        data_lake=shared.data_lake,
        registry=shared.registry,
        bus=shared.bus,
        functions=shared.functions,
    )
    role = grantee(stack)
    # WHEN the role is granted describing the training jobs
    training.grant_describe_training_jobs(role)
    # THEN it may describe the jobs named with the pipeline's prefix, and do nothing else
    jobs = arn("sagemaker", f"training-job/{training.job_name_prefix}-*")
    assert granted(stack, role) == {"sagemaker:DescribeTrainingJob": {jobs}}


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
