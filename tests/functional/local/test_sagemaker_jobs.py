"""SageMaker training and processing jobs of the embedded AWS run for real; approvals emit events."""

from __future__ import annotations

import io
import json
from typing import Any

import joblib
import pytest
from botocore.exceptions import ClientError

from mlcycle.local import sagemaker as sagemaker_jobs
from mlcycle.local.sagemaker import jobs, processing
from tests.functional.local import conftest_sagemaker
from tests.functional.local.conftest_sagemaker import (
    FIXTURES,
    ROLE,
    Client,
    SageMakerWorld,
    TrainedJob,
    read_tar,
    unique,
    wait_for_job,
)

# The shared fixtures, bound here so pytest finds them (conftest.py belongs to the embedded AWS as a whole).
sm_world = conftest_sagemaker.sm_world
trained_job = conftest_sagemaker.trained_job


def _output_uri(job: TrainedJob) -> str:
    return job.model_data.replace("model.tar.gz", "output.tar.gz")


def _evaluation(aws_client: Client, job: TrainedJob) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(read_tar(aws_client("s3"), _output_uri(job))["evaluation.json"])
    return result


def _run(aws_client: Client, wait_for: Any, request: dict[str, Any]) -> dict[str, Any]:
    aws_client("sagemaker").create_training_job(**request)
    return wait_for_job(aws_client, wait_for, request["TrainingJobName"])


# ---- training: the happy path --------------------------------------------------------------------------


def test_training_job_completes_with_model_artifacts(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client
) -> None:
    # GIVEN a job created with the scikit-learn container's hyperparameters (see the trained_job fixture)
    job = trained_job.description
    # THEN it was InProgress when created and went through SageMaker's secondary statuses to Completed
    assert trained_job.status_at_creation == "InProgress"
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Completed", "Completed")
    transitions = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert transitions == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert job["TrainingTimeInSeconds"] >= 1 and job["TrainingEndTime"] >= job["TrainingStartTime"]
    # AND the model directory was tarred to {S3OutputPath}/{job}/output/model.tar.gz
    assert (
        trained_job.model_data
        == f"s3://{sm_world.bucket}/training-jobs/{trained_job.name}/output/model.tar.gz"
    )
    model = read_tar(aws_client("s3"), trained_job.model_data)
    assert {"model.joblib", "code/inference.py"} <= set(model)
    estimator = joblib.load(io.BytesIO(model["model.joblib"]))
    assert estimator.score(sm_world.features, sm_world.labels) > 0.9
    # AND the metric definition's regex was applied to the log
    [metric] = job["FinalMetricDataList"]
    assert metric["MetricName"] == "train:accuracy" and metric["Value"] > 0.9
    assert job["AlgorithmSpecification"]["MetricDefinitions"][0]["Name"] == "train:accuracy"


def test_hyperparameters_and_environment_follow_the_training_toolkit(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client
) -> None:
    # GIVEN what the script recorded about its invocation
    evaluation = _evaluation(aws_client, trained_job)
    env = evaluation["env"]
    root = jobs.job_root(None, "training", trained_job.name)
    # THEN user hyperparameters arrive as sorted --name value arguments, framework ones do not
    assert evaluation["argv"] == ["--max_iter", "200", "--regularization", "0.5"]
    assert json.loads(env["SM_HPS"]) == {"max_iter": 200, "regularization": 0.5}
    assert env["SM_HP_MAX_ITER"] == "200"
    # AND the SM_* variables point into the local container layout
    assert env["SM_MODEL_DIR"] == str(root / "model")
    assert env["SM_CHANNEL_TRAIN"] == str(root / "input" / "data" / "train")
    assert env["SM_OUTPUT_DATA_DIR"] == str(root / "output" / "data")
    assert env["SM_OUTPUT_DIR"] == str(root / "output")
    assert env["SM_INPUT_CONFIG_DIR"] == str(root / "input" / "config")
    assert json.loads(env["SM_CHANNELS"]) == ["train"]
    assert (env["SM_USER_ENTRY_POINT"], env["SM_CURRENT_HOST"]) == ("train.py", "algo-1")
    assert env["SM_MODULE_DIR"] == sm_world.sourcedir
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"] and int(env["SM_NUM_CPUS"]) >= 1
    assert json.loads(env["SM_TRAINING_ENV"])["job_name"] == trained_job.name
    assert evaluation["cwd"] == str(root / "code")
    # AND the config files hold the request as SageMaker writes them
    written = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    assert written == trained_job.description["HyperParameters"]
    assert json.loads((root / "input" / "config" / "inputdataconfig.json").read_text())["train"][
        "ContentType"
    ] == ("text/csv")
    assert (root / "input" / "data" / "train" / "data.csv").is_file()


def test_training_log_reaches_cloudwatch_logs(trained_job: TrainedJob, aws_client: Client) -> None:
    logs = aws_client("logs")
    streams = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=trained_job.name
    )["logStreams"]
    [stream] = streams
    events = logs.get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream["logStreamName"]
    )
    assert any("train:accuracy=" in event["message"] for event in events["events"])


# ---- training: failures and stops ----------------------------------------------------------------------


def test_failure_file_becomes_the_failure_reason(
    sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> None:
    request = sm_world.training_request(
        unique("fails"), hyperparameters={"fail_with": "no rows in channel train"}
    )
    job = _run(aws_client, wait_for, request)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Failed", "Failed")
    assert job["FailureReason"] == "AlgorithmError: no rows in channel train"
    assert "ModelArtifacts" not in job


def test_crash_reports_the_end_of_stderr(sm_world: SageMakerWorld, aws_client: Client, wait_for: Any) -> None:
    job = _run(
        aws_client, wait_for, sm_world.training_request(unique("crash"), hyperparameters={"crash": "kaboom"})
    )
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError: ExecuteUserScriptError:\nExitCode 1")
    assert "RuntimeError: kaboom" in job["FailureReason"]


def test_missing_channel_data_is_a_client_error(
    sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> None:
    empty = f"s3://{sm_world.bucket}/training-sets/nothing-here/train"
    job = _run(aws_client, wait_for, sm_world.training_request(unique("nodata"), train_uri=empty))
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(f'ClientError: No S3 objects found under S3 URL "{empty}"')


def test_an_isolated_job_runs_its_code_from_the_code_channel(
    sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> None:
    # GIVEN a network-isolated job as the pipeline writes it with a VPC: the sourcedir as a "code" channel
    # and sagemaker_submit_directory naming its path in the container (infra/training_jobs.py)
    request = sm_world.training_request(unique("isolated"))
    request["HyperParameters"]["sagemaker_submit_directory"] = "/opt/ml/input/data/code/sourcedir.tar.gz"
    request["InputDataConfig"].append(
        {
            "ChannelName": "code",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": sm_world.sourcedir}},
        }
    )
    request["EnableNetworkIsolation"] = True
    # THEN the job extracts its code from the channel and trains
    assert _run(aws_client, wait_for, request)["TrainingJobStatus"] == "Completed"
    # AND a path in no channel is the job's error, not a download attempt
    request = sm_world.training_request(unique("nocode"))
    request["HyperParameters"]["sagemaker_submit_directory"] = "/opt/ml/input/data/code/sourcedir.tar.gz"
    job = _run(aws_client, wait_for, request)
    assert job["TrainingJobStatus"] == "Failed" and "in no input channel" in job["FailureReason"]


def test_stop_training_job_stops_the_process_and_keeps_its_model(
    sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> None:
    # GIVEN a job that saved a file and then sleeps
    sagemaker = aws_client("sagemaker")
    name = unique("stop")
    sagemaker.create_training_job(**sm_world.training_request(name, hyperparameters={"sleep": "60"}))
    log = jobs.job_root(None, "training", name) / "logs" / "algo-1.log"
    wait_for(lambda: log.is_file() and "sleeping" in log.read_text(), timeout=30, what="the script to sleep")
    # WHEN it is stopped
    sagemaker.stop_training_job(TrainingJobName=name)
    # THEN it is Stopping at once, Stopped soon, and what it saved was uploaded
    assert sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] in (
        "Stopping",
        "Stopped",
    )
    job = wait_for_job(aws_client, wait_for, name, timeout=30)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert "partial.txt" in read_tar(aws_client("s3"), job["ModelArtifacts"]["S3ModelArtifacts"])
    assert name not in sagemaker_jobs.running_jobs()
    # AND a finished job cannot be stopped
    with pytest.raises(ClientError, match="in status Stopped"):
        sagemaker.stop_training_job(TrainingJobName=name)


def test_max_runtime_stops_the_job(sm_world: SageMakerWorld, aws_client: Client, wait_for: Any) -> None:
    request = sm_world.training_request(unique("slow"), hyperparameters={"sleep": "60"}, max_runtime=1)
    job = _run(aws_client, wait_for, request)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert "MaxRuntimeInSeconds=1" in job["FailureReason"]


def test_training_job_names_are_unique(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client
) -> None:
    with pytest.raises(ClientError, match="already exists"):
        aws_client("sagemaker").create_training_job(**sm_world.training_request(trained_job.name))


def test_step_functions_task_runs_the_job(
    sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> None:
    # GIVEN the training pipeline's pattern: createTrainingJob, then describe in a Wait/Choice loop
    name = unique("sfn")
    request = sm_world.training_request(name, hyperparameters={"fail_with": "from step functions"})
    definition = {
        "StartAt": "Train",
        "States": {
            "Train": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createTrainingJob",
                "Parameters": request,
                "ResultPath": None,
                "Next": "Wait",
            },
            "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Describe"},
            "Describe": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob",
                "Parameters": {"TrainingJobName": name},
                "ResultSelector": {"status.$": "$.TrainingJobStatus"},
                "Next": "Done?",
            },
            "Done?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.status", "StringEquals": "InProgress", "Next": "Wait"}],
                "Default": "End",
            },
            "End": {"Type": "Succeed"},
        },
    }
    sfn = aws_client("stepfunctions")
    machine = sfn.create_state_machine(name=unique("train"), definition=json.dumps(definition), roleArn=ROLE)
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"])["executionArn"]

    # WHEN the execution ends
    def finished() -> dict[str, Any] | None:
        result: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        return result if result["status"] != "RUNNING" else None

    result = wait_for(finished, timeout=60, what="the execution")
    # THEN the job it created really ran, and the loop saw its final status
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"]) == {"status": "Failed"}
    job = aws_client("sagemaker").describe_training_job(TrainingJobName=name)
    assert job["FailureReason"] == "AlgorithmError: from step functions"


# ---- processing ----------------------------------------------------------------------------------------


def test_processing_job_rewrites_container_paths_and_uploads_outputs(
    sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> None:
    # GIVEN a script and a CSV in S3, mounted under /opt/ml/processing as a processing job asks
    s3, bucket, name = aws_client("s3"), sm_world.bucket, unique("process")
    s3.put_object(Bucket=bucket, Key=f"{name}/code/process.py", Body=(FIXTURES / "process.py").read_bytes())
    s3.put_object(Bucket=bucket, Key=f"{name}/data/a.csv", Body=b"1,2\n3,4\n5,6\n")

    def mount(input_name: str, prefix: str) -> dict[str, Any]:
        local = f"/opt/ml/processing/input/{input_name}"
        return {
            "InputName": input_name,
            "S3Input": {
                "S3Uri": f"s3://{bucket}/{prefix}",
                "LocalPath": local,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
            },
        }

    aws_client("sagemaker").create_processing_job(
        ProcessingJobName=name,
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}
        },
        AppSpecification={
            "ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/process.py"],
            "ContainerArguments": [
                "--input",
                "/opt/ml/processing/input/data",
                "--output=/opt/ml/processing/output",
            ],
        },
        Environment={"GREETING": "hello"},
        ProcessingInputs=[mount("code", f"{name}/code/process.py"), mount("data", f"{name}/data")],
        ProcessingOutputConfig={
            "Outputs": [
                {
                    "OutputName": "summary",
                    "S3Output": {
                        "S3Uri": f"s3://{bucket}/{name}/out",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        RoleArn=ROLE,
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )

    # WHEN it finishes
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = aws_client("sagemaker").describe_processing_job(ProcessingJobName=name)
        return job if job["ProcessingJobStatus"] not in ("InProgress", "Stopping") else None

    job = wait_for(done, timeout=30, what="the processing job")
    # THEN the script ran on local copies of the inputs and its output went to S3
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["Environment"] == {"GREETING": "hello"}
    summary = json.loads(s3.get_object(Bucket=bucket, Key=f"{name}/out/summary.json")["Body"].read())
    root = jobs.job_root(None, "processing", name)
    assert summary == {"rows": 3, "input": str(root / "processing" / "input" / "data"), "greeting": "hello"}


def test_path_rewriter_maps_only_whole_container_paths(tmp_path: Any) -> None:
    paths = processing.PathRewriter(tmp_path, extra=("/data",))
    assert paths.text("/opt/ml/processing/input") == f"{tmp_path}/processing/input"
    assert paths.text("--out=/opt/ml/processing/output") == f"--out={tmp_path}/processing/output"
    assert paths.text("/data/x.csv") == f"{tmp_path}/fs/data/x.csv"
    assert paths.text("/opt/mlflow") == "/opt/mlflow" and paths.text("/dataset") == "/dataset"


# ---- model registry events -----------------------------------------------------------------------------


def test_model_package_approval_changes_emit_state_change_events(aws_client: Client, wait_for: Any) -> None:
    # GIVEN a default-bus rule for our group's package state changes, delivering to a queue
    sagemaker, events, sqs = aws_client("sagemaker"), aws_client("events"), aws_client("sqs")
    group = unique("group")
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    url = sqs.create_queue(QueueName=unique("approvals"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": [group]},
    }
    rule = unique("approvals")
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    # WHEN a package is registered (no status: AWS defaults to PendingManualApproval), its description
    # changes (no event), then it is approved
    inference = {
        "Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    arn = sagemaker.create_model_package(ModelPackageGroupName=group, InferenceSpecification=inference)[
        "ModelPackageArn"
    ]
    sagemaker.update_model_package(ModelPackageArn=arn, ApprovalDescription="looked at it")
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    # THEN two events arrived, shaped like AWS's, in order
    received: list[dict[str, Any]] = []

    def two_events() -> bool:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(received) >= 2

    wait_for(two_events, timeout=10, what="two approval events")
    assert [e["detail"]["ModelApprovalStatus"] for e in received] == ["PendingManualApproval", "Approved"]
    detail = received[1]["detail"]
    assert (received[1]["source"], received[1]["detail-type"]) == (
        "aws.sagemaker",
        "SageMaker Model Package State Change",
    )
    assert (detail["ModelPackageArn"], detail["ModelPackageGroupName"], detail["ModelPackageVersion"]) == (
        arn,
        group,
        1,
    )
    assert detail["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == "s3://b/model.tar.gz"
    assert isinstance(detail["CreationTime"], int)  # epoch milliseconds, as in SageMaker's events
    # AND updates that leave fields out keep them (moto would have reset them)
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    assert (package["ModelApprovalStatus"], package["ApprovalDescription"]) == ("Approved", "looked at it")
