"""Serving: deploy an approved model version to the endpoint.

The endpoint itself is created (and later updated, under the deployment policy, rolled back by the
alarms of infra.endpoint_alarms) at run time by ``deploy_model``, named ``settings.endpoint_name``; the
stack owns the function, its permissions, the trigger and the alarms.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from constructs import Construct

from infra import env
from infra.data_lake import DataLake
from infra.functions import FunctionFactory
from infra.gates import acknowledge, grantee_scope, iam5_actions, iam5_arn
from infra.queues import dead_letter_queue
from infra.registry import ModelRegistry
from mlcycle.config import Settings
from mlcycle.names import ENDPOINT_STATE_CHANGE, MODEL_PACKAGE_STATE_CHANGE, SAGEMAKER_SOURCE

RETRY_ATTEMPTS = 2


class Serving(Construct):
    """Attributes: ``deploy_model`` and ``deployment_outcome`` (the functions), ``approved`` and
    ``state_changed`` (their rules), ``dead_letters``, ``endpoint_key`` (of the endpoints' volumes and
    data capture).

    Grants on the endpoint and the per-version models and endpoint configs it serves: ``grant_deploy``
    (create and update them), ``grant_conclude_deployments`` (read them and clear the deployment's tag).
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
        sagemaker_role: iam.IRole,
        functions: FunctionFactory,
        rollback_alarms: Sequence[cloudwatch.IAlarm] = (),
    ) -> None:
        super().__init__(scope, id)
        self._settings = settings
        self.dead_letters = dead_letter_queue(self, "DeadLetters", key=data_lake.key)
        self.deploy_model = functions.function(
            self,
            "DeployModel",
            handler="functions.deploy_model.handler",
            description="Model, endpoint config with data capture, create/update the endpoint",
            environment=env.build(
                settings,
                "deploy_model",
                monitoring=data_lake.monitoring,
                sagemaker_role=sagemaker_role,
                rollback_alarms=rollback_alarms,
            ),
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=RETRY_ATTEMPTS,
        )
        self.endpoint_key = self._endpoint_key(data_lake)
        self._grant_deploy_model(registry, sagemaker_role)
        self.deployment_outcome = self._outcome_function(settings, functions, registry, bus)
        self.approved = events.Rule(
            self,
            "Approved",
            description="An approved version in our model package group is deployed",
            event_pattern=events.EventPattern(
                source=[SAGEMAKER_SOURCE],
                detail_type=[MODEL_PACKAGE_STATE_CHANGE],
                detail={
                    "ModelPackageGroupName": [registry.group_name],
                    # Shadow mode also shadows a version awaiting review, and ends that when it is rejected.
                    "ModelApprovalStatus": ["Approved"]
                    + (["PendingManualApproval", "Rejected"] if settings.serving.shadow else []),
                },
            ),
        )
        self.approved.add_target(
            targets.LambdaFunction(
                self.deploy_model,
                dead_letter_queue=self.dead_letters,
                retry_attempts=3,
                max_event_age=cdk.Duration.hours(2),
            )
        )

    def _outcome_function(
        self, settings: Settings, functions: FunctionFactory, registry: ModelRegistry, bus: events.IEventBus
    ) -> lambda_.Function:
        """How each deployment ended (deployed, or rolled back by SageMaker), from the endpoint's state."""
        fn = functions.function(
            self,
            "DeploymentOutcome",
            handler="functions.deployment_outcome.handler",
            description="Endpoint InService again: ModelDeployed, or DeploymentRolledBack naming the alarm",
            environment=env.build(settings, "deployment_outcome", bus=bus),
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=RETRY_ATTEMPTS,
        )
        bus.grant_put_events_to(fn)
        registry.grant_annotate(fn)
        self.grant_conclude_deployments(fn)
        if settings.serving.serverless is None:  # SageMaker scales serverless endpoints itself
            self.grant_scale_endpoint(fn)
        self._acknowledge_dead_letters(fn)
        self.state_changed = events.Rule(
            self,
            "EndpointStateChanged",
            description="Our endpoint changed state: conclude the deployment in progress",
            event_pattern=events.EventPattern(
                source=[SAGEMAKER_SOURCE],
                detail_type=[ENDPOINT_STATE_CHANGE],
                detail={"EndpointName": [settings.endpoint_name], "EndpointStatus": ["InService"]},
            ),
        )
        self.state_changed.add_target(
            targets.LambdaFunction(
                fn, dead_letter_queue=self.dead_letters, retry_attempts=3, max_event_age=cdk.Duration.hours(2)
            )
        )
        return fn

    def _endpoint_key(self, data_lake: DataLake) -> kms.IKey:
        """The key of the endpoints' volumes and capture (mlcycle.security): the settings' or our data key."""
        arn = self._settings.security.endpoint_kms_key_arn
        return kms.Key.from_key_arn(self, "EndpointKey", arn) if arn else data_lake.key

    def _grant_deploy_model(self, registry: ModelRegistry, sagemaker_role: iam.IRole) -> None:
        # SageMaker reads the model and writes capture data with the execution role, not with ours.
        fn = self.deploy_model
        key = self.endpoint_key
        # Capture objects are encrypted with the endpoint key; SageMaker creates a grant on it for the
        # instances' volumes on behalf of whoever creates or updates the endpoint.
        key.grant_encrypt_decrypt(sagemaker_role)
        key.grant(fn, "kms:CreateGrant", "kms:DescribeKey")
        sagemaker_role.grant_pass_role(fn.grant_principal)
        self.grant_deploy(fn)
        registry.grant_describe(fn)
        self._acknowledge_dead_letters(fn)

    # -- grants on what serving deploys: the endpoint, and a model and an endpoint config per version ----

    def grant_deploy(self, grantee: iam.IGrantable) -> iam.Grant:
        """Create a version's model and endpoint config and create or update the endpoint with it (each
        described first), tagging the endpoint with the config it asked for."""
        return self._grant(
            grantee,
            "sagemaker:CreateModel",
            "sagemaker:CreateEndpointConfig",
            "sagemaker:CreateEndpoint",
            "sagemaker:UpdateEndpoint",
            "sagemaker:DescribeModel",
            "sagemaker:DescribeEndpointConfig",
            "sagemaker:DescribeEndpoint",
            "sagemaker:AddTags",
            "sagemaker:ListTags",
        )

    def grant_conclude_deployments(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read the endpoint, its configs and models with their tags, and clear the endpoint's tag naming
        the config a deployment asked for (concluding it)."""
        return self._grant(
            grantee,
            "sagemaker:DescribeEndpoint",
            "sagemaker:DescribeEndpointConfig",
            "sagemaker:DescribeModel",
            "sagemaker:ListTags",
            "sagemaker:DeleteTags",
        )

    def grant_read_endpoint(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read the endpoint, its configs and models with their tags: which model version serves."""
        return self._grant(
            grantee,
            "sagemaker:DescribeEndpoint",
            "sagemaker:DescribeEndpointConfig",
            "sagemaker:DescribeModel",
            "sagemaker:ListTags",
        )

    def grant_scale_endpoint(self, grantee: iam.IGrantable) -> iam.Grant:
        """Register the endpoint's variant with Application Auto Scaling and put its target-tracking policy
        (mlcycle.deployment.ensure_autoscaling). No CDK grant exists for a target created at run time."""
        stack, endpoint = cdk.Stack.of(self), self._settings.endpoint_name
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=[
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:PutScalingPolicy",
                "application-autoscaling:DescribeScalableTargets",
                "application-autoscaling:DescribeScalingPolicies",
                "cloudwatch:DescribeAlarms",
            ],
            resource_arns=["*"],
        )
        # Target tracking creates and deletes its alarms with the caller's permissions, under this name.
        alarms = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"TargetTracking-endpoint/{endpoint}/*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
            resource_arns=[alarms],
        )
        service = "sagemaker.application-autoscaling.amazonaws.com"
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["iam:CreateServiceLinkedRole"],
            resource_arns=[
                stack.format_arn(
                    service="iam",
                    region="",
                    resource="role",
                    resource_name=f"aws-service-role/{service}/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
                )
            ],
            conditions={"StringLike": {"iam:AWSServiceName": service}},
        )
        acknowledge(
            grantee_scope(grantee),
            "AwsSolutions-IAM5[Resource::*]",
            iam5_arn(self, "cloudwatch", f"alarm:TargetTracking-endpoint/{endpoint}/*"),
            reason="Application Auto Scaling's actions and DescribeAlarms have no resource-level "
            "permissions; target tracking names its alarms after the endpoint at run time.",
        )
        return grant

    def _grant(self, grantee: iam.IGrantable, *actions: str) -> iam.Grant:
        grant = iam.Grant.add_to_principal(
            grantee=grantee, actions=list(actions), resource_arns=self._sagemaker_arns()
        )
        prefix = self._settings.prefix
        acknowledge(
            grantee_scope(grantee),
            iam5_arn(self, "sagemaker", f"model/{prefix}-*"),
            iam5_arn(self, "sagemaker", f"endpoint-config/{prefix}-*"),
            reason="Each approved version gets its own model and endpoint config, named at run time "
            "under our prefix.",
        )
        return grant

    def _sagemaker_arns(self) -> list[str]:
        stack, prefix = cdk.Stack.of(self), self._settings.prefix
        return [
            stack.format_arn(service="sagemaker", resource="model", resource_name=f"{prefix}-*"),
            stack.format_arn(service="sagemaker", resource="endpoint-config", resource_name=f"{prefix}-*"),
            stack.format_arn(
                service="sagemaker", resource="endpoint", resource_name=self._settings.endpoint_name
            ),
        ]

    @staticmethod
    def _acknowledge_dead_letters(fn: lambda_.Function) -> None:
        acknowledge(
            fn.role or fn,
            *iam5_actions("kms:GenerateDataKey*", "kms:ReEncrypt*"),
            reason="The kms wildcards come from the CDK's grant to send to the KMS-encrypted dead-letter "
            "queue.",
        )
