"""The SageMaker jobs of the training pipeline: the training job's and the evaluation job's requests,
and the execution role they (and endpoint models) run as.

Both jobs are named ``{prefix}-{execution name}`` (a training and a processing job may share a name) and
write under ``training-jobs/{job}/`` in the artifacts bucket. Training runs ``train.py`` of the
``sourcedir.tar.gz`` asset with the sklearn image; evaluation runs ``evaluate.py`` of the same archive as a
processing job. Both are created request-response: the state machine of ``infra.training_pipeline``
polls them, and adds their retries and catches.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra import network
from infra.data_lake import DataLake
from infra.gates import acknowledge, grantee_scope, iam5_actions, iam5_arn, iam5_asset_bucket, iam5_resource
from infra.images import sklearn_image_uri
from mlcycle.config import Settings
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


def sagemaker_role(
    scope: Construct, *, settings: Settings, data_lake: DataLake, sourcedir: s3_assets.Asset
) -> iam.Role:
    """The execution role of training and processing jobs and endpoint models, in ``scope``."""
    role = iam.Role(
        scope,
        "SageMakerRole",
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description="Execution role of mlcycle training jobs and endpoint models",
    )
    data_lake.curated.grant_read(role)
    data_lake.artifacts.grant_read_write(role)
    data_lake.monitoring.grant_write(role)  # endpoint data capture
    data_lake.key.grant(role, "kms:CreateGrant", "kms:DescribeKey")  # encrypted training volumes
    sourcedir.grant_read(role)
    stack = cdk.Stack.of(scope)
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
    _acknowledge_sagemaker_role(scope, role, data_lake)
    if settings.security.vpc is not None:
        network.grant_network_interfaces(role, settings.security.vpc, network.SAGEMAKER_INTERFACE_ACTIONS)
    return role


def _acknowledge_sagemaker_role(scope: Construct, role: iam.Role, lake: DataLake) -> None:
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
        iam5_asset_bucket(scope),
        reason="Read access to the CDK asset bucket, where the sourcedir.tar.gz asset is uploaded.",
    )
    acknowledge(
        role,
        iam5_arn(scope, "logs", "log-group:/aws/sagemaker/*"),
        "AwsSolutions-IAM5[Resource::*]",
        reason="SageMaker jobs and endpoints log to /aws/sagemaker/* groups named per job; "
        "cloudwatch:PutMetricData has no resource-level permissions (limited by namespace instead).",
    )


class TrainingJobs:
    """The jobs' tasks, names, URIs and ARNs for the state machine built in ``scope``.

    Not a construct: the tasks are created in ``scope`` itself (the pipeline construct), so their
    construct ids, and the template's logical ids, are those of states of the pipeline.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        settings: Settings,
        data_lake: DataLake,
        role: iam.IRole,
        sourcedir: s3_assets.Asset,
        job_name_prefix: str,
    ) -> None:
        self._scope = scope
        self._settings = settings
        self._lake = data_lake
        self._role = role
        self._sourcedir = sourcedir
        self._prefix = job_name_prefix

    # -- names, locations, ARNs ----------------------------------------------------------------------

    def job_name(self) -> str:
        """Training and evaluation jobs share the name ``{prefix}-{execution name}`` (different kinds)."""
        return sfn.JsonPath.format(f"{self._prefix}-{{}}", sfn.JsonPath.execution_name)

    def job_uri(self, suffix: str) -> str:
        """``s3://{artifacts}/training-jobs/{job}/{suffix}``, resolved per execution."""
        base = self._lake.artifacts.s3_url_for_object(f"{TRAINING_JOBS_PREFIX}{self._prefix}")
        return sfn.JsonPath.format(f"{base}-{{}}/{suffix}", sfn.JsonPath.execution_name)

    def training_job_arn(self) -> str:
        return cdk.Stack.of(self._scope).format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{self._prefix}-*"
        )

    def processing_job_arn(self) -> str:
        return cdk.Stack.of(self._scope).format_arn(
            service="sagemaker", resource="processing-job", resource_name=f"{self._prefix}-*"
        )

    def grant_describe_training_jobs(self, grantee: iam.IGrantable) -> iam.Grant:
        """Describe the training jobs the pipeline runs (their model artifacts, metrics and image)."""
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["sagemaker:DescribeTrainingJob"],
            resource_arns=[self.training_job_arn()],
        )
        acknowledge(
            grantee_scope(grantee),
            iam5_arn(self._scope, "sagemaker", f"training-job/{self._prefix}-*"),
            reason="Training jobs are named per execution at run time (prefix + execution name).",
        )
        return grant

    # -- evaluation ----------------------------------------------------------------------------------

    def evaluate(self) -> tasks.CallAwsService:
        """CreateProcessingJob (request-response): evaluate.py on the model, the sets and the run document."""
        settings, lake = self._settings, self._lake
        image = sklearn_image_uri(self._scope, settings.sklearn_version)
        inputs = [
            self._processing_input("code", self._sourcedir.s3_object_url),
            self._processing_input("model", self.job_uri("output/model.tar.gz")),
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
            self._scope,
            "EvaluateModel",
            service="sagemaker",
            action="createProcessingJob",
            iam_resources=[self.processing_job_arn()],
            parameters={
                "ProcessingJobName": self.job_name(),
                "RoleArn": self._role.role_arn,
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
                                "S3Uri": self.job_uri("evaluation"),
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

    # -- training ------------------------------------------------------------------------------------

    def train(self) -> tasks.SageMakerCreateTrainingJob:
        """CreateTrainingJob (request-response): train.py on the training set's train and test channels."""
        settings, lake = self._settings, self._lake
        vpc = settings.security.vpc
        task = tasks.SageMakerCreateTrainingJob(
            self._scope,
            "TrainModel",
            integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
            training_job_name=self.job_name(),
            role=self._role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=tasks.DockerImage.from_registry(
                    sklearn_image_uri(self._scope, settings.sklearn_version)
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
            vpc_config=network.training_vpc_config(self._scope, vpc) if vpc else None,
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
                    s3_location=S3Uri(self._sourcedir.s3_object_url),
                    s3_data_type=tasks.S3DataType.S3_PREFIX,
                )
            ),
        )

    def _submit_directory(self) -> str:
        """Where the training toolkit finds the code: in S3, or in the code channel when isolated."""
        if self._settings.security.network_isolation:
            return f"/opt/ml/input/data/{CODE_CHANNEL}/{self._sourcedir.s3_object_key}"
        return self._sourcedir.s3_object_url

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
            "sagemaker_region": cdk.Stack.of(self._scope).region,
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
