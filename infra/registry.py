"""Model registry: the SageMaker model package group our models are versioned in, and what may use it."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.gates import acknowledge, grantee_scope, iam5_arn
from mlcycle.config import Settings


class ModelRegistry(Construct):
    """Attributes: ``group_name`` (``settings.model_package_group``), ``group`` (the L1 resource).

    Grants, as the CDK's own constructs offer them (no consumer writes registry statements by hand):
    ``grant_describe`` (read a version: deploying it), ``grant_annotate`` (also update its metadata),
    ``grant_find_champion`` (also list the versions: the champion is the latest approved one),
    ``grant_register`` (also create and update versions).
    """

    def __init__(self, scope: Construct, id: str, *, settings: Settings) -> None:
        super().__init__(scope, id)
        self.group_name = settings.model_package_group
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=self.group_name,
            model_package_group_description=f"Models of {settings.prefix} ({settings.problem.dataset.name})",
        )

    @property
    def group_arn(self) -> str:
        return cdk.Stack.of(self).format_arn(
            service="sagemaker", resource="model-package-group", resource_name=self.group_name
        )

    @property
    def versions_arn(self) -> str:
        """Every version in the group (SageMaker numbers them: ``{group}/{n}``)."""
        return cdk.Stack.of(self).format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{self.group_name}/*"
        )

    def grant_describe(self, grantee: iam.IGrantable) -> iam.Grant:
        grant = iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:DescribeModelPackage"], resource_arns=[self.versions_arn]
        )
        self._acknowledge_versions(grantee)
        return grant

    def grant_find_champion(self, grantee: iam.IGrantable) -> iam.Grant:
        grant = self.grant_describe(grantee)
        # ListModelPackages supports no resource-level permissions: the one statement that needs "*".
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:ListModelPackages"], resource_arns=["*"]
        )
        acknowledge(
            grantee_scope(grantee),
            "AwsSolutions-IAM5[Resource::*]",
            reason="sagemaker:ListModelPackages (finding the champion) has no resource-level permissions.",
        )
        return grant

    def grant_annotate(self, grantee: iam.IGrantable) -> iam.Grant:
        """Describe a version and update it (the deploy outcome function writes its metadata)."""
        self.grant_describe(grantee)
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:UpdateModelPackage"], resource_arns=[self.versions_arn]
        )

    def grant_register(self, grantee: iam.IGrantable) -> iam.Grant:
        self.grant_find_champion(grantee)
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=[
                "sagemaker:CreateModelPackage",
                "sagemaker:DescribeModelPackage",
                "sagemaker:UpdateModelPackage",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:AddTags",
            ],
            resource_arns=[self.group_arn, self.versions_arn],
        )

    def _acknowledge_versions(self, grantee: iam.IGrantable) -> None:
        acknowledge(
            grantee_scope(grantee),
            iam5_arn(self, "sagemaker", f"model-package/{self.group_name}/*"),
            reason="The group's versions are numbered by SageMaker at registration: they are named by the "
            "group, never one by one.",
        )
