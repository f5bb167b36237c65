"""Training and validation: the polled training state machine, its functions and the SageMaker role.

validate -> build training set -> train (training job) -> evaluate (processing job: metrics, post-training
tests, drift baselines) -> tests gate -> register -> approval policy. The definition polls
``describeTrainingJob`` / ``describeProcessingJob`` instead of using ``.sync``, so the same definition runs
in AWS and in the embedded AWS (moto cannot execute SageMaker ``.sync`` tasks). Every task retries
transient errors and catches the rest into one failure path: a report in S3, ``TrainingFailed`` on the
bus, then a Fail state carrying the original error and cause.
"""

from __future__ import annotations

from typing import TypeVar

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra import env, network
from infra.bundling import REPO_ROOT, SourceDirBundle, sourcedir_bundling
from infra.data_lake import DataLake
from infra.functions import THROTTLED, FunctionFactory, encrypted_log_group
from infra.gates import (
    acknowledge,
    grantee_scope,
    iam5_actions,
    iam5_arn,
    iam5_asset_bucket,
    iam5_resource,
    ignore_redundant_depends_on,
)
from infra.images import sklearn_image_uri
from infra.registry import ModelRegistry
from mlcycle import pipeline_runs
from mlcycle.config import Settings
from mlcycle.retraining.controller import RECENT_WINDOWS_PREFIX
from mlcycle.security import CODE_CHANNEL

#: SageMaker's limits: job names of 63 characters, hyperparameter values of 2,500.
MAX_JOB_NAME = 63
MAX_HYPERPARAMETER = 2500
#: Execution names we can count on: StartExecution and EventBridge default to a 36-character UUID.
EXECUTION_NAME_LENGTH = 36
MAX_TRAINING_RUNTIME = cdk.Duration.hours(2)
TRAINING_VOLUME_GB = 30
PARQUET = "application/x-parquet"
#: Where training jobs write ``{job}/output/model.tar.gz`` in the artifacts bucket; the evaluation job
#: writes ``{job}/evaluation/`` next to it.
TRAINING_JOBS_PREFIX = "training-jobs/"
MAX_EVALUATION_RUNTIME = cdk.Duration.hours(1)
PROCESSING = "/opt/ml/processing"
#: Processing jobs download inputs as they are; this extracts the sourcedir.tar.gz (the same archive the
#: training job runs from) and runs a script of it. SageMaker caps each entry point item at 256 characters.
EVALUATE_BOOTSTRAP = (
    "import glob,runpy,sys,tarfile as t;c,s=sys.argv[1:3];d=c+'/src';"
    "t.open(glob.glob(c+'/*.gz')[0]).extractall(d,filter='data');"
    "sys.argv=[d+'/'+s,*sys.argv[3:]];runpy.run_path(sys.argv[0],run_name='__main__')"
)
#: Errors of SageMaker calls worth another try: throttling and service-side failures. The aws-sdk
#: integration names unmodeled errors ``SageMaker.SageMakerException``, which the embedded AWS (moto)
#: spells ``sagemaker.sagemakerException``; the optimized integration says ``AmazonSageMakerException``.
SAGEMAKER_TRANSIENT_ERRORS = (
    "SageMaker.ThrottlingException",
    "SageMaker.SageMakerException",
    "SageMaker.AmazonSageMakerException",
    "sagemaker.sagemakerException",
)


_Task = TypeVar("_Task", bound=sfn.TaskStateBase)


def _retry_throttled(task: _Task) -> _Task:
    """Retry a function whose reserved concurrency is in use by other runs (infra.functions.THROTTLED)."""
    task.add_retry(errors=[THROTTLED], interval=cdk.Duration.seconds(5), max_attempts=6, backoff_rate=2)
    return task


def training_job_name_prefix(settings: Settings) -> str:
    """The deployment prefix cut so that ``{prefix}-{execution name}`` fits SageMaker's 63 characters."""
    return settings.prefix[: MAX_JOB_NAME - 1 - EXECUTION_NAME_LENGTH]


class S3Uri(tasks.S3Location):
    """An S3 location given as an ``s3://`` URI or a JSON path, with no grants of its own.

    The CDK's locations grant ``s3:GetObject``/``s3:ListBucket`` on ``*`` for JSON-path inputs and render
    bucket outputs as https URLs; the SageMaker role already holds exactly the bucket grants it needs.
    """

    def __init__(self, uri: str) -> None:
        super().__init__()
        self._uri = uri

    def bind(self, task: tasks.ISageMakerTask, *_args: object, **_kwargs: object) -> tasks.S3LocationConfig:
        return tasks.S3LocationConfig(uri=self._uri)


class TrainingPipeline(Construct):
    """Attributes: ``state_machine``; functions ``validate_run``, ``build_training_set``,
    ``check_model_tests``, ``register_model``, ``report_failure``; ``sagemaker_role`` (execution role of
    training and processing jobs and endpoint models), ``sourcedir`` (the ``sourcedir.tar.gz`` asset),
    ``job_name_prefix``.

    Grants: ``grant_describe_training_jobs`` (the jobs the pipeline runs).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        data_lake: DataLake,
        registry: ModelRegistry,
        bus: events.IEventBus,
        functions: FunctionFactory,
    ) -> None:
        super().__init__(scope, id)
        self._settings = settings
        self._lake = data_lake
        self.job_name_prefix = training_job_name_prefix(settings)
        bundle = SourceDirBundle()
        self.sourcedir = s3_assets.Asset(
            self,
            "SourceDir",
            path=str(REPO_ROOT),
            asset_hash_type=cdk.AssetHashType.CUSTOM,
            asset_hash=bundle.asset_hash(),
            bundling=sourcedir_bundling(bundle),
        )
        self.sagemaker_role = self._sagemaker_role()
        self.validate_run = self._validate_run_function(functions, registry)
        self.build_training_set = self._build_training_set_function(functions)
        self.check_model_tests = self._check_model_tests_function(functions)
        self.register_model = self._register_model_function(functions, registry, bus)
        self.report_failure = self._report_failure_function(functions, bus)
        self.state_machine = self._state_machine()

    # -- roles and functions ------------------------------------------------------------------------

    def _sagemaker_role(self) -> iam.Role:
        lake = self._lake
        role = iam.Role(
            self,
            "SageMakerRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Execution role of mlcycle training jobs and endpoint models",
        )
        lake.curated.grant_read(role)
        lake.artifacts.grant_read_write(role)
        lake.monitoring.grant_write(role)  # endpoint data capture
        lake.key.grant(role, "kms:CreateGrant", "kms:DescribeKey")  # encrypted training volumes
        self.sourcedir.grant_read(role)
        stack = cdk.Stack.of(self)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/sagemaker/*",
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "mlcycle*"]}},
            )
        )
        self._acknowledge_sagemaker_role(role)
        if self._settings.security.vpc is not None:
            network.grant_network_interfaces(
                role, self._settings.security.vpc, network.SAGEMAKER_INTERFACE_ACTIONS
            )
        return role

    def _acknowledge_sagemaker_role(self, role: iam.Role) -> None:
        lake = self._lake
        acknowledge(
            role,
            *iam5_actions("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"),
            *iam5_actions("kms:GenerateDataKey*", "kms:ReEncrypt*"),
            iam5_resource(lake.curated),
            iam5_resource(lake.artifacts),
            iam5_resource(lake.monitoring),
            reason="CDK bucket/key grants: jobs read training sets and write models and reports under "
            "prefixes chosen per job at run time, so object-level wildcards on our own buckets are needed.",
        )
        acknowledge(
            role,
            iam5_asset_bucket(self),
            reason="Read access to the CDK asset bucket, where the sourcedir.tar.gz asset is uploaded.",
        )
        acknowledge(
            role,
            iam5_arn(self, "logs", "log-group:/aws/sagemaker/*"),
            "AwsSolutions-IAM5[Resource::*]",
            reason="SageMaker jobs and endpoints log to /aws/sagemaker/* groups named per job; "
            "cloudwatch:PutMetricData has no resource-level permissions (limited by namespace instead).",
        )

    def _validate_run_function(self, functions: FunctionFactory, registry: ModelRegistry) -> lambda_.Function:
        artifacts = self._lake.artifacts
        fn = functions.function(
            self,
            "ValidateRunFunction",
            handler="functions.validate_run.handler",
            description="Checks a training run's input and settings, writes its run document",
            environment=env.build(self._settings, "validate_run", artifacts=artifacts),
        )
        artifacts.grant_put(fn, f"{pipeline_runs.RUNS_PREFIX}*")
        # The retraining controller's recent labelled window, copied into the run's prefix.
        artifacts.grant_read(fn, f"{RECENT_WINDOWS_PREFIX}*")
        registry.grant_find_champion(fn)
        acknowledge(
            fn.role or fn,
            "AwsSolutions-IAM5[Resource::*]",
            reason="The X-Ray tracing actions support no resource-level permissions.",
        )
        acknowledge(
            fn.role or fn,
            *iam5_actions(
                "s3:Abort*",
                "kms:GenerateDataKey*",
                "kms:ReEncrypt*",
                "s3:GetObject*",
                "s3:GetBucket*",
                "s3:List*",
            ),
            iam5_resource(artifacts, f"/{pipeline_runs.RUNS_PREFIX}*"),
            iam5_resource(artifacts, f"/{RECENT_WINDOWS_PREFIX}*"),
            reason="Writes run documents under runs/ (one per execution, named at run time) and reads the "
            "recent windows the retraining controller writes under recent-windows/ in our artifacts bucket.",
        )
        return fn

    def _check_model_tests_function(self, functions: FunctionFactory) -> lambda_.Function:
        artifacts = self._lake.artifacts
        fn = functions.function(
            self,
            "CheckModelTestsFunction",
            handler="functions.check_model_tests.handler",
            description="The tests gate: reads the evaluation job's post-training test report",
            environment=env.build(self._settings, "check_model_tests"),
        )
        artifacts.grant_read(fn, f"{TRAINING_JOBS_PREFIX}*")
        acknowledge(
            fn.role or fn,
            *iam5_actions("s3:GetObject*", "s3:GetBucket*", "s3:List*"),
            iam5_resource(artifacts, f"/{TRAINING_JOBS_PREFIX}*"),
            reason="Reads the evaluation of any of our training jobs (named per execution at run time) "
            "under training-jobs/ in our artifacts bucket.",
        )
        return fn

    def _report_failure_function(self, functions: FunctionFactory, bus: events.IEventBus) -> lambda_.Function:
        artifacts = self._lake.artifacts
        fn = functions.function(
            self,
            "ReportFailureFunction",
            handler="functions.report_failure.handler",
            description="A failed training run's report to S3, and TrainingFailed on the bus",
            environment=env.build(self._settings, "report_failure", artifacts=artifacts, bus=bus),
        )
        artifacts.grant_put(fn, f"{pipeline_runs.FAILURES_PREFIX}*")
        bus.grant_put_events_to(fn)
        acknowledge(
            fn.role or fn,
            *iam5_actions("s3:Abort*", "kms:GenerateDataKey*", "kms:ReEncrypt*"),
            iam5_resource(artifacts, f"/{pipeline_runs.FAILURES_PREFIX}*"),
            reason="Writes failure reports under failures/ (one per execution, named at run time) in our "
            "artifacts bucket.",
        )
        return fn

    def _arn(self, service: str, resource: str, name: str) -> str:
        return cdk.Stack.of(self).format_arn(service=service, resource=resource, resource_name=name)

    def _build_training_set_function(self, functions: FunctionFactory) -> lambda_.Function:
        lake = self._lake
        point_in_time = bool(self._settings.feature_views)
        fn = functions.function(
            self,
            "BuildTrainingSetFunction",
            handler="functions.build_training_set.handler",
            description="Curated Parquet (+ feature views, point in time) -> train/test Parquet",
            environment=env.build(
                self._settings,
                "build_training_set",
                curated=lake.curated,
                artifacts=lake.artifacts,
                # The offline store is read straight from S3 (object listing); the Glue database only
                # names the views' tables in the manifest, so no Glue permission is granted.
                features=lake.features if point_in_time else None,
                glue_database=lake.glue_database_name if point_in_time else None,
            ),
        )
        lake.curated.grant_read(fn)
        lake.artifacts.grant_read_write(fn)
        if point_in_time:
            lake.features.grant_read(fn)
        acknowledge(
            fn.role or fn,
            *iam5_actions("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"),
            *iam5_actions("kms:GenerateDataKey*", "kms:ReEncrypt*"),
            iam5_resource(lake.curated),
            iam5_resource(lake.artifacts),
            *([iam5_resource(lake.features)] if point_in_time else []),
            reason="CDK bucket/key grants: reads curated partitions of any date (and feature partitions of "
            "any view and date) and writes training sets under a new id per run, so object-level "
            "wildcards on our own buckets are needed.",
        )
        return fn

    def _register_model_function(
        self, functions: FunctionFactory, registry: ModelRegistry, bus: events.IEventBus
    ) -> lambda_.Function:
        settings = self._settings
        fn = functions.function(
            self,
            "RegisterModelFunction",
            handler="functions.register_model.handler",
            description="Quality gate on the model's evaluation, then the model package and approval",
            environment=env.build(settings, "register_model", artifacts=self._lake.artifacts, bus=bus),
        )
        # Reads the evaluation job's reports (their S3 URIs go into the model package).
        self._lake.artifacts.grant_read(fn)
        bus.grant_put_events_to(fn)
        self.grant_describe_training_jobs(fn)
        registry.grant_register(fn)
        acknowledge(
            fn.role or fn,
            "AwsSolutions-IAM5[Resource::*]",
            reason="The X-Ray tracing actions support no resource-level permissions.",
        )
        acknowledge(
            fn.role or fn,
            *iam5_actions("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"),
            *iam5_actions("kms:GenerateDataKey*", "kms:ReEncrypt*"),
            iam5_resource(self._lake.artifacts),
            reason="Reads the evaluation of any of our training jobs (named per execution).",
        )
        return fn

    def grant_describe_training_jobs(self, grantee: iam.IGrantable) -> iam.Grant:
        """Describe the training jobs the pipeline runs (their model artifacts, metrics and image)."""
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["sagemaker:DescribeTrainingJob"],
            resource_arns=[self._training_job_arn()],
        )
        acknowledge(
            grantee_scope(grantee),
            iam5_arn(self, "sagemaker", f"training-job/{self.job_name_prefix}-*"),
            reason="Training jobs are named per execution at run time (prefix + execution name).",
        )
        return grant

    def _training_job_arn(self) -> str:
        return cdk.Stack.of(self).format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{self.job_name_prefix}-*"
        )

    # -- the state machine -------------------------------------------------------------------------

    def _job_name(self) -> str:
        """Training and evaluation jobs share the name ``{prefix}-{execution name}`` (different kinds)."""
        return sfn.JsonPath.format(f"{self.job_name_prefix}-{{}}", sfn.JsonPath.execution_name)

    def _job_uri(self, suffix: str) -> str:
        """``s3://{artifacts}/training-jobs/{job}/{suffix}``, resolved per execution."""
        base = self._lake.artifacts.s3_url_for_object(f"{TRAINING_JOBS_PREFIX}{self.job_name_prefix}")
        return sfn.JsonPath.format(f"{base}-{{}}/{suffix}", sfn.JsonPath.execution_name)

    def _state_machine(self) -> sfn.StateMachine:
        self._report = self._failure_path()
        validate = self._lambda_task(
            "ValidateRun",
            self.validate_run,
            {"execution_name": sfn.JsonPath.execution_name, "input": sfn.JsonPath.entire_payload},
            "$.run",
        )
        build = self._lambda_task(
            "BuildTrainingSet",
            self.build_training_set,
            {"execution_name": sfn.JsonPath.execution_name, "input": sfn.JsonPath.entire_payload},
            "$.training_set",
        )
        train = self._catch(self._retry(self._train()))
        training = self._poll_job(
            "Training",
            "describeTrainingJob",
            {"TrainingJobName": self._job_name()},
            self._training_job_arn(),
            "$.TrainingJobStatus",
            on_completed=self._evaluation(),
        )
        definition = validate.next(build).next(train).next(training)
        return self._machine(definition)

    def _evaluation(self) -> sfn.IChainable:
        evaluate = self._catch(self._retry(self._evaluate()))
        return evaluate.next(
            self._poll_job(
                "Evaluation",
                "describeProcessingJob",
                {"ProcessingJobName": self._job_name()},
                self._processing_job_arn(),
                "$.ProcessingJobStatus",
                on_completed=self._tests_gate(),
            )
        )

    def _poll_job(
        self,
        kind: str,
        action: str,
        parameters: dict[str, str],
        arn: str,
        status_path: str,
        *,
        on_completed: sfn.IChainable,
    ) -> sfn.IChainable:
        """Wait -> describe -> Choice: Completed goes on, Failed/Stopped report, anything else waits again."""
        wait = sfn.Wait(self, f"WaitFor{kind}", time=sfn.WaitTime.seconds_path("$.run.poll_seconds"))
        describe = self._describe(
            f"Describe{kind}Job", action, parameters, arn, selector={"Status.$": status_path}
        )
        error = f"{kind}JobFailed"
        # A stopped job (by hand or after MaxRuntimeInSeconds) may have no FailureReason to select, and a
        # missing ResultSelector path is an uncatchable States.Runtime error: describe only failed jobs.
        failure = self._describe(
            f"Describe{kind}Failure",
            action,
            parameters,
            arn,
            selector={"Error": error, "Cause.$": "$.FailureReason"},
            result_path="$.error",
        )
        stopped = sfn.Pass(
            self,
            f"{kind}Stopped",
            result=sfn.Result.from_object(
                {"Error": f"{kind}JobStopped", "Cause": f"The {kind.lower()} job was stopped"}
            ),
            result_path="$.error",
        )
        status = f"$.{kind.lower()}_job.Status"
        done = (
            sfn.Choice(self, f"{kind}Done?")
            .when(sfn.Condition.string_equals(status, "Completed"), on_completed)
            .when(sfn.Condition.string_equals(status, "Failed"), failure.next(self._report))
            .when(sfn.Condition.string_equals(status, "Stopped"), stopped.next(self._report))
            .otherwise(wait)
        )
        return wait.next(describe).next(done)

    def _describe(
        self,
        id: str,
        action: str,
        parameters: dict[str, str],
        arn: str,
        *,
        selector: dict[str, str],
        result_path: str | None = None,
    ) -> tasks.CallAwsService:
        task = tasks.CallAwsService(
            self,
            id,
            service="sagemaker",
            action=action,
            parameters=parameters,
            iam_resources=[arn],
            result_selector=selector,
            result_path=result_path or f"$.{id.removeprefix('Describe').removesuffix('Job').lower()}_job",
        )
        return self._catch(self._retry(task))

    def _tests_gate(self) -> sfn.IChainable:
        check = self._lambda_task(
            "CheckModelTests",
            self.check_model_tests,
            {"evaluation_prefix": self._job_uri("evaluation")},
            "$.model_tests",
        )
        failed = sfn.Pass(
            self,
            "ModelTestsFailed",
            parameters={"Error": "ModelTestsFailed", "Cause.$": "$.model_tests.summary"},
            result_path="$.error",
        )
        gate = (
            sfn.Choice(self, "ModelTestsPassed?")
            .when(sfn.Condition.boolean_equals("$.model_tests.passed", True), self._register())
            .otherwise(failed.next(self._report))
        )
        return check.next(gate)

    def _register(self) -> sfn.IChainable:
        register = self._lambda_task(
            "RegisterModel",
            self.register_model,
            {
                "training_job_name": self._job_name(),
                "evaluation_job_name": self._job_name(),
                "evaluation_prefix": self._job_uri("evaluation"),
                "training_set": sfn.JsonPath.object_at("$.training_set"),
                "execution_arn": sfn.JsonPath.execution_id,
                "fault_injection": sfn.JsonPath.object_at("$.run.fault_injection"),
            },
            "$.registration",
        )
        # The approval policy ran in the register step (auto-approve or ModelReviewRequested); the two
        # ends say which way it went.
        decision = (
            sfn.Choice(self, "ApprovalDecision")
            .when(
                sfn.Condition.string_equals("$.registration.approval_status", "Approved"),
                sfn.Succeed(self, "Approved"),
            )
            .otherwise(sfn.Succeed(self, "AwaitingReview"))
        )
        return register.next(decision)

    def _lambda_task(
        self, id: str, fn: lambda_.IFunction, payload: dict[str, object], result_path: str
    ) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            id,
            lambda_function=fn,
            payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True,
            result_path=result_path,
        )
        return self._catch(_retry_throttled(task))

    def _failure_path(self) -> sfn.IChainable:
        """ReportFailure (report + event) -> Fail with the original error and cause."""
        failed = sfn.Fail(self, "PipelineFailed", error_path="$.error.Error", cause_path="$.error.Cause")
        report = tasks.LambdaInvoke(
            self,
            "ReportFailure",
            lambda_function=self.report_failure,
            payload=sfn.TaskInput.from_object(
                {
                    "execution_name": sfn.JsonPath.execution_name,
                    "execution_arn": sfn.JsonPath.execution_id,
                    "error": sfn.JsonPath.string_at("$.error.Error"),
                    "cause": sfn.JsonPath.string_at("$.error.Cause"),
                }
            ),
            payload_response_only=True,
            result_path="$.failure_report",
        )
        # A report that cannot be written must not hide the original failure.
        _retry_throttled(report).add_catch(failed, result_path="$.report_error")
        return report.next(failed)

    def _catch(self, task: _Task) -> _Task:
        task.add_catch(self._report, errors=[sfn.Errors.ALL], result_path="$.error")
        return task

    @staticmethod
    def _retry(task: _Task) -> _Task:
        task.add_retry(
            errors=list(SAGEMAKER_TRANSIENT_ERRORS),
            interval=cdk.Duration.seconds(2),
            max_attempts=3,
            backoff_rate=2,
        )
        return task

    def _processing_job_arn(self) -> str:
        return cdk.Stack.of(self).format_arn(
            service="sagemaker", resource="processing-job", resource_name=f"{self.job_name_prefix}-*"
        )

    def _evaluate(self) -> tasks.CallAwsService:
        """CreateProcessingJob (request-response): evaluate.py on the model, the sets and the run document."""
        settings, lake = self._settings, self._lake
        image = sklearn_image_uri(self, settings.sklearn_version)
        inputs = [
            self._processing_input("code", self.sourcedir.s3_object_url),
            self._processing_input("model", self._job_uri("output/model.tar.gz")),
            self._processing_input("train", sfn.JsonPath.string_at("$.training_set.train_uri")),
            self._processing_input("test", sfn.JsonPath.string_at("$.training_set.test_uri")),
            self._processing_input("run", sfn.JsonPath.string_at("$.run.run_prefix")),
        ]
        arguments = [
            f"--{name}" if i % 2 == 0 else value
            for name, value in (
                ("model", f"{PROCESSING}/model"),
                ("train", f"{PROCESSING}/train"),
                ("test", f"{PROCESSING}/test"),
                ("run", f"{PROCESSING}/run"),
                ("output", f"{PROCESSING}/evaluation"),
                ("failure-file", "/opt/ml/output/failure"),
            )
            for i in range(2)
        ]
        return tasks.CallAwsService(
            self,
            "EvaluateModel",
            service="sagemaker",
            action="createProcessingJob",
            iam_resources=[self._processing_job_arn()],
            parameters={
                "ProcessingJobName": self._job_name(),
                "RoleArn": self.sagemaker_role.role_arn,
                "AppSpecification": {
                    "ImageUri": image,
                    "ContainerEntrypoint": [
                        "python3",
                        "-c",
                        EVALUATE_BOOTSTRAP,
                        f"{PROCESSING}/code",
                        "evaluate.py",
                    ],
                    "ContainerArguments": arguments,
                },
                "ProcessingInputs": inputs,
                "ProcessingOutputConfig": {
                    "Outputs": [
                        {
                            "OutputName": "evaluation",
                            "S3Output": {
                                "S3Uri": self._job_uri("evaluation"),
                                "LocalPath": f"{PROCESSING}/evaluation",
                                "S3UploadMode": "EndOfJob",
                            },
                        }
                    ],
                    "KmsKeyId": lake.key.key_arn,
                },
                "ProcessingResources": {
                    "ClusterConfig": {
                        "InstanceCount": 1,
                        "InstanceType": settings.instances.processing,
                        "VolumeSizeInGB": TRAINING_VOLUME_GB,
                        "VolumeKmsKeyId": lake.key.key_arn,
                    }
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": MAX_EVALUATION_RUNTIME.to_seconds()},
                # evaluate.py gets its code, model and sets as inputs: isolation costs it nothing.
                **network.processing_network(settings.security.vpc),
            },
            result_selector={"ProcessingJobArn.$": "$.ProcessingJobArn"},
            result_path="$.evaluation_job_created",
        )

    @staticmethod
    def _processing_input(name: str, uri: str) -> dict[str, object]:
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": f"{PROCESSING}/{name}",
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        }

    def _train(self) -> tasks.SageMakerCreateTrainingJob:
        settings, lake = self._settings, self._lake
        vpc = settings.security.vpc
        task = tasks.SageMakerCreateTrainingJob(
            self,
            "TrainModel",
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            training_job_name=self._job_name(),
            role=self.sagemaker_role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=tasks.DockerImage.from_registry(
                    sklearn_image_uri(self, settings.sklearn_version)
                ),
                training_input_mode=tasks.InputMode.FILE,
            ),
            hyperparameters=self._hyperparameters(),
            input_data_config=[
                self._channel("train"),
                self._channel("test"),
                *([self._code_channel()] if settings.security.network_isolation else []),
            ],
            output_data_config=tasks.OutputDataConfig(
                s3_output_location=S3Uri(lake.artifacts.s3_url_for_object(TRAINING_JOBS_PREFIX)),
                encryption_key=lake.key,
            ),
            resource_config=tasks.ResourceConfig(
                instance_count=1,
                instance_type=ec2.InstanceType(settings.instances.training.removeprefix("ml.")),
                volume_size=cdk.Size.gibibytes(TRAINING_VOLUME_GB),
                volume_encryption_key=lake.key,
            ),
            stopping_condition=tasks.StoppingCondition(max_runtime=MAX_TRAINING_RUNTIME),
            # train.py reads its channels and writes the model: it needs no network of its own.
            enable_network_isolation=settings.security.network_isolation or None,
            vpc_config=network.training_vpc_config(self, vpc) if vpc else None,
            result_path="$.training_job",
        )
        if vpc is not None:
            network.add_security_groups(task, vpc)
        return task

    def _code_channel(self) -> tasks.Channel:
        """The sourcedir as input data: an isolated container cannot download it from S3 itself."""
        return tasks.Channel(
            channel_name=CODE_CHANNEL,
            data_source=tasks.DataSource(
                s3_data_source=tasks.S3DataSource(
                    s3_location=S3Uri(self.sourcedir.s3_object_url), s3_data_type=tasks.S3DataType.S3_PREFIX
                )
            ),
        )

    def _submit_directory(self) -> str:
        """Where the training toolkit finds the code: in S3, or in the code channel when isolated."""
        if self._settings.security.network_isolation:
            return f"/opt/ml/input/data/{CODE_CHANNEL}/{self.sourcedir.s3_object_key}"
        return self.sourcedir.s3_object_url

    def _hyperparameters(self) -> dict[str, str]:
        problem = self._settings.problem.model_dump_json()
        if len(problem) > MAX_HYPERPARAMETER:
            raise ValueError(f"settings.problem is {len(problem)} characters as JSON; SageMaker allows 2500")
        tests = self._settings.model_tests.model_dump_json()
        if len(tests) > MAX_HYPERPARAMETER:
            raise ValueError(
                f"settings.model_tests is {len(tests)} characters as JSON; SageMaker allows 2500"
            )
        return {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": self._submit_directory(),
            "sagemaker_region": cdk.Stack.of(self).region,
            "mlcycle_problem": problem,
            "mlcycle_tests": tests,  # the pre-training tests run in the job, before fitting
        }

    @staticmethod
    def _channel(name: str) -> tasks.Channel:
        return tasks.Channel(
            channel_name=name,
            content_type=PARQUET,
            data_source=tasks.DataSource(
                s3_data_source=tasks.S3DataSource(
                    s3_location=S3Uri(sfn.JsonPath.string_at(f"$.training_set.{name}_uri")),
                    s3_data_type=tasks.S3DataType.S3_PREFIX,
                )
            ),
        )

    def _machine(self, definition: sfn.IChainable) -> sfn.StateMachine:
        settings = self._settings
        log_group = encrypted_log_group(self, "StateMachineLogs", settings=settings, key=self._lake.key)
        machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            tracing_enabled=True,
            timeout=MAX_TRAINING_RUNTIME.plus(MAX_EVALUATION_RUNTIME).plus(cdk.Duration.hours(1)),
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment=f"{settings.prefix}: validate, build the training set, train, evaluate, test, register",
        )
        self._lake.key.grant(machine, "kms:CreateGrant", "kms:DescribeKey")
        # The training job (the CDK task grants it) and the evaluation's processing job run with the role.
        self.sagemaker_role.grant_pass_role(machine.grant_principal)
        self._acknowledge_state_machine(machine)
        ignore_redundant_depends_on(machine)
        return machine

    def _acknowledge_state_machine(self, machine: sfn.StateMachine) -> None:
        acknowledge(
            machine.role,
            *(
                iam5_resource(fn, ":*")
                for fn in (
                    self.validate_run,
                    self.build_training_set,
                    self.check_model_tests,
                    self.register_model,
                    self.report_failure,
                )
            ),
            reason="The CDK's LambdaInvoke grant also covers the functions' versions and aliases (':*').",
        )
        acknowledge(
            machine.role,
            iam5_arn(self, "sagemaker", "training-job/*"),
            iam5_arn(self, "sagemaker", f"training-job/{self.job_name_prefix}-*"),
            iam5_arn(self, "sagemaker", f"processing-job/{self.job_name_prefix}-*"),
            reason="Training and processing job names are made per execution at run time (prefix + "
            "execution name); the CDK's SageMakerCreateTrainingJob grants on training-job/* when the name "
            "is a JSON path.",
        )
        acknowledge(
            machine.role,
            "AwsSolutions-IAM5[Resource::*]",
            reason="Actions without resource-level permissions: the CloudWatch Logs delivery APIs "
            "(logging to our log group), X-Ray tracing, and sagemaker:ListTags added by the CDK task.",
        )
