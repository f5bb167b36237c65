"""Training and validation: the polled training state machine, its functions and the SageMaker role.

validate -> build training set -> train (training job) -> evaluate (processing job: metrics, post-training
tests, drift baselines) -> tests gate -> register -> approval policy. The definition polls
``describeTrainingJob`` / ``describeProcessingJob`` instead of using ``.sync``, so the same definition runs
in AWS and in the embedded AWS (moto cannot execute SageMaker ``.sync`` tasks). Every task retries
transient errors and catches the rest into one failure path: a report in S3, ``TrainingFailed`` on the
bus, then a Fail state carrying the original error and cause. The jobs' requests, names and locations, and
the SageMaker role they run as, are defined in ``infra.training_jobs``; this construct owns them.
"""

from __future__ import annotations

from typing import TypeVar

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra import env
from infra.bundling import REPO_ROOT, SourceDirBundle, sourcedir_bundling
from infra.data_lake import DataLake
from infra.functions import THROTTLED, FunctionFactory, encrypted_log_group
from infra.gates import (
    acknowledge,
    iam5_actions,
    iam5_arn,
    iam5_resource,
    ignore_redundant_depends_on,
)
from infra.registry import ModelRegistry
from infra.training_jobs import (
    MAX_EVALUATION_RUNTIME,
    MAX_TRAINING_RUNTIME,
    TRAINING_JOBS_PREFIX,
    TrainingJobs,
    sagemaker_role,
    training_job_name_prefix,
)
from mlcycle import pipeline_runs
from mlcycle.config import Settings
from mlcycle.retraining.controller import RECENT_WINDOWS_PREFIX

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


class TrainingPipeline(Construct):
    """Attributes: ``state_machine``; functions ``validate_run``, ``build_training_set``,
    ``check_model_tests``, ``register_model``, ``report_failure``; ``sagemaker_role`` (execution role of
    training and processing jobs and endpoint models), ``sourcedir`` (the ``sourcedir.tar.gz`` asset),
    ``job_name_prefix``, ``jobs`` (the SageMaker jobs' tasks, :class:`infra.training_jobs.TrainingJobs`).

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
        self.sagemaker_role = sagemaker_role(
            self, settings=settings, data_lake=data_lake, sourcedir=self.sourcedir
        )
        self.jobs = TrainingJobs(
            self,
            settings=settings,
            data_lake=data_lake,
            role=self.sagemaker_role,
            sourcedir=self.sourcedir,
            job_name_prefix=self.job_name_prefix,
        )
        self.validate_run = self._validate_run_function(functions, registry)
        self.build_training_set = self._build_training_set_function(functions)
        self.check_model_tests = self._check_model_tests_function(functions)
        self.register_model = self._register_model_function(functions, registry, bus)
        self.report_failure = self._report_failure_function(functions, bus)
        self.state_machine = self._state_machine()

    # -- roles and functions ------------------------------------------------------------------------

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
        return self.jobs.grant_describe_training_jobs(grantee)

    # -- the state machine -------------------------------------------------------------------------

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
        train = self._catch(self._retry(self.jobs.train()))
        training = self._poll_job(
            "Training",
            "describeTrainingJob",
            {"TrainingJobName": self.jobs.job_name()},
            self.jobs.training_job_arn(),
            "$.TrainingJobStatus",
            on_completed=self._evaluation(),
        )
        definition = validate.next(build).next(train).next(training)
        return self._machine(definition)

    def _evaluation(self) -> sfn.IChainable:
        evaluate = self._catch(self._retry(self.jobs.evaluate()))
        return evaluate.next(
            self._poll_job(
                "Evaluation",
                "describeProcessingJob",
                {"ProcessingJobName": self.jobs.job_name()},
                self.jobs.processing_job_arn(),
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
            {"evaluation_prefix": self.jobs.job_uri("evaluation")},
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
                "training_job_name": self.jobs.job_name(),
                "evaluation_job_name": self.jobs.job_name(),
                "evaluation_prefix": self.jobs.job_uri("evaluation"),
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
