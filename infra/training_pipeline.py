"""Training and validation: the polled training state machine, its functions and the SageMaker role.

The definition polls ``describeTrainingJob`` instead of using ``.sync``, so the same definition runs in
AWS and in the embedded AWS (moto cannot execute SageMaker ``.sync`` tasks).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
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
from infra.functions import FunctionFactory, encrypted_log_group
from infra.gates import (
    acknowledge,
    iam5_actions,
    iam5_arn,
    iam5_asset_bucket,
    iam5_resource,
    ignore_redundant_depends_on,
)
from infra.images import sklearn_image_uri
from infra.registry import ModelRegistry
from mlcycle.config import Settings

#: SageMaker's limits: job names of 63 characters, hyperparameter values of 2,500.
MAX_JOB_NAME = 63
MAX_HYPERPARAMETER = 2500
#: Execution names we can count on: StartExecution and EventBridge default to a 36-character UUID.
EXECUTION_NAME_LENGTH = 36
MAX_TRAINING_RUNTIME = cdk.Duration.hours(2)
TRAINING_VOLUME_GB = 30
PARQUET = "application/x-parquet"
#: Where training jobs write ``{job}/output/model.tar.gz`` in the artifacts bucket.
TRAINING_JOBS_PREFIX = "training-jobs/"


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
    """Attributes: ``state_machine``, ``build_training_set`` and ``register_model`` (functions),
    ``sagemaker_role`` (execution role of training jobs and endpoint models), ``sourcedir``
    (the ``sourcedir.tar.gz`` asset), ``job_name_prefix``.
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
        self.build_training_set = self._build_training_set_function(functions)
        self.register_model = self._register_model_function(functions, registry, bus)
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

    def _build_training_set_function(self, functions: FunctionFactory) -> lambda_.Function:
        lake = self._lake
        fn = functions.function(
            self,
            "BuildTrainingSetFunction",
            handler="functions.build_training_set.handler",
            description="Curated Parquet -> train/test Parquet in the artifacts bucket",
            environment=env.build(
                self._settings, "build_training_set", curated=lake.curated, artifacts=lake.artifacts
            ),
        )
        lake.curated.grant_read(fn)
        lake.artifacts.grant_read_write(fn)
        acknowledge(
            fn.role or fn,
            *iam5_actions("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"),
            *iam5_actions("kms:GenerateDataKey*", "kms:ReEncrypt*"),
            iam5_resource(lake.curated),
            iam5_resource(lake.artifacts),
            reason="CDK bucket/key grants: reads curated partitions of any date and writes training sets "
            "under a new id per run, so object-level wildcards on our own buckets are needed.",
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
            description="Quality gate on the training job's evaluation, then the model package",
            environment=env.build(settings, "register_model", artifacts=self._lake.artifacts, bus=bus),
        )
        # Reads the job's output.tar.gz and stores its evaluation.json next to it.
        self._lake.artifacts.grant_read_write(fn)
        bus.grant_put_events_to(fn)
        stack = cdk.Stack.of(self)
        group = registry.group_name
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeTrainingJob"],
                resources=[self._training_job_arn()],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:UpdateModelPackage",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:AddTags",
                ],
                resources=[
                    stack.format_arn(
                        service="sagemaker", resource="model-package-group", resource_name=group
                    ),
                    stack.format_arn(
                        service="sagemaker", resource="model-package", resource_name=f"{group}/*"
                    ),
                ],
            )
        )
        # ListModelPackages (finding the champion) supports no resource-level permissions.
        fn.add_to_role_policy(iam.PolicyStatement(actions=["sagemaker:ListModelPackages"], resources=["*"]))
        acknowledge(
            fn.role or fn,
            "AwsSolutions-IAM5[Resource::*]",
            reason="sagemaker:ListModelPackages and the X-Ray tracing actions support no resource-level "
            "permissions.",
        )
        acknowledge(
            fn.role or fn,
            *iam5_actions("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"),
            *iam5_actions("kms:GenerateDataKey*", "kms:ReEncrypt*"),
            iam5_resource(self._lake.artifacts),
            iam5_arn(self, "sagemaker", f"training-job/{self.job_name_prefix}-*"),
            iam5_arn(self, "sagemaker", f"model-package/{group}/*"),
            reason="Reads the evaluation of any of our training jobs (named per execution) and creates "
            "versions in our own model package group (versions are numbered by SageMaker).",
        )
        return fn

    def _training_job_arn(self) -> str:
        return cdk.Stack.of(self).format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{self.job_name_prefix}-*"
        )

    # -- the state machine -------------------------------------------------------------------------

    def _job_name(self) -> str:
        return sfn.JsonPath.format(f"{self.job_name_prefix}-{{}}", sfn.JsonPath.execution_name)

    def _state_machine(self) -> sfn.StateMachine:
        build = tasks.LambdaInvoke(
            self,
            "BuildTrainingSet",
            lambda_function=self.build_training_set,
            payload=sfn.TaskInput.from_object(
                {"execution_name": sfn.JsonPath.execution_name, "input": sfn.JsonPath.entire_payload}
            ),
            payload_response_only=True,
            result_path="$.training_set",
        )
        wait = sfn.Wait(
            self, "WaitForTraining", time=sfn.WaitTime.seconds_path("$.training_set.poll_seconds")
        )
        describe = self._describe(
            "DescribeTrainingJob", {"Status.$": "$.TrainingJobStatus"}, "$.training_job"
        )
        failure = self._describe("DescribeFailure", {"FailureReason.$": "$.FailureReason"}, "$.failure")
        failed = sfn.Fail(
            self, "TrainingFailed", error="TrainingJobFailed", cause_path="$.failure.FailureReason"
        )
        # A stopped job (by hand or after MaxRuntimeInSeconds) has no FailureReason to select, and a
        # missing ResultSelector path is an uncatchable States.Runtime error: fail it directly.
        stopped = sfn.Fail(
            self, "TrainingStopped", error="TrainingJobStopped", cause="The training job was stopped"
        )
        done = (
            sfn.Choice(self, "TrainingDone?")
            .when(sfn.Condition.string_equals("$.training_job.Status", "Completed"), self._register())
            .when(sfn.Condition.string_equals("$.training_job.Status", "Failed"), failure.next(failed))
            .when(sfn.Condition.string_equals("$.training_job.Status", "Stopped"), stopped)
            .otherwise(wait)
        )
        definition = build.next(self._train()).next(wait).next(describe).next(done)
        return self._machine(definition)

    def _register(self) -> sfn.IChainable:
        register = tasks.LambdaInvoke(
            self,
            "RegisterModel",
            lambda_function=self.register_model,
            payload=sfn.TaskInput.from_object(
                {
                    "training_job_name": self._job_name(),
                    "training_set": sfn.JsonPath.object_at("$.training_set"),
                    "execution_arn": sfn.JsonPath.execution_id,
                }
            ),
            payload_response_only=True,
            result_path="$.registration",
        )
        return register.next(sfn.Succeed(self, "Registered"))

    def _describe(self, id: str, selector: dict[str, str], result_path: str) -> tasks.CallAwsService:
        return tasks.CallAwsService(
            self,
            id,
            service="sagemaker",
            action="describeTrainingJob",
            parameters={"TrainingJobName": self._job_name()},
            iam_resources=[self._training_job_arn()],
            result_selector=selector,
            result_path=result_path,
        )

    def _train(self) -> tasks.SageMakerCreateTrainingJob:
        settings, lake = self._settings, self._lake
        return tasks.SageMakerCreateTrainingJob(
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
            input_data_config=[self._channel("train"), self._channel("test")],
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
            result_path="$.training_job",
        )

    def _hyperparameters(self) -> dict[str, str]:
        problem = self._settings.problem.model_dump_json()
        if len(problem) > MAX_HYPERPARAMETER:
            raise ValueError(f"settings.problem is {len(problem)} characters as JSON; SageMaker allows 2500")
        return {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": self.sourcedir.s3_object_url,
            "sagemaker_region": cdk.Stack.of(self).region,
            "mlcycle_problem": problem,
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
            timeout=MAX_TRAINING_RUNTIME.plus(cdk.Duration.hours(1)),
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment=f"{settings.prefix}: build training set, train, evaluate, register",
        )
        self._lake.key.grant(machine, "kms:CreateGrant", "kms:DescribeKey")
        self._acknowledge_state_machine(machine)
        ignore_redundant_depends_on(machine)
        return machine

    def _acknowledge_state_machine(self, machine: sfn.StateMachine) -> None:
        acknowledge(
            machine.role,
            iam5_resource(self.build_training_set, ":*"),
            iam5_resource(self.register_model, ":*"),
            reason="The CDK's LambdaInvoke grant also covers the functions' versions and aliases (':*').",
        )
        acknowledge(
            machine.role,
            iam5_arn(self, "sagemaker", "training-job/*"),
            iam5_arn(self, "sagemaker", f"training-job/{self.job_name_prefix}-*"),
            reason="Training job names are made per execution at run time (prefix + execution name); the "
            "CDK's SageMakerCreateTrainingJob grants on training-job/* when the name is a JSON path.",
        )
        acknowledge(
            machine.role,
            "AwsSolutions-IAM5[Resource::*]",
            reason="Actions without resource-level permissions: the CloudWatch Logs delivery APIs "
            "(logging to our log group), X-Ray tracing, and sagemaker:ListTags added by the CDK task.",
        )
