"""Model registry: the SageMaker model package group our models are versioned in."""

from __future__ import annotations

from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from mlcycle.config import Settings


class ModelRegistry(Construct):
    """Attributes: ``group_name`` (``settings.model_package_group``), ``group`` (the L1 resource)."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings) -> None:
        super().__init__(scope, id)
        self.group_name = settings.model_package_group
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=self.group_name,
            model_package_group_description=f"Models of {settings.prefix} ({settings.problem.dataset.name})",
        )
