"""Security settings of a deployment (``[security]`` in the settings): the optional VPC, the key of the
endpoints' volumes and data capture, and reserved concurrency. :class:`mlcycle.config.Settings` holds them.

Kept apart from :mod:`mlcycle.config` so that what CDK, deployments and tests need of them reads in one
place; like the rest of the settings, nothing here reads the environment or calls AWS.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

#: The input channel of a network-isolated training job's code: such a container cannot download its
#: source directory from S3, so SageMaker delivers it as input data, under ``/opt/ml/input/data/code/``.
CODE_CHANNEL = "code"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _id(kind: str) -> str:
    """EC2's id format (8 or 17 hex digits), as CloudFormation checks it."""
    return rf"^{kind}-([0-9a-f]{{8}}|[0-9a-f]{{17}})$"


class VpcSettings(_Model):
    """Existing subnets and security groups (the stack imports them, it creates no VPC). With these set,
    the Lambda functions, the training and processing jobs and the endpoint's models run in them, and
    training and evaluation jobs run network-isolated. The subnets need routes (VPC endpoints or a NAT)
    to the AWS APIs the functions call: S3, DynamoDB, SageMaker, Step Functions, EventBridge, SNS, SQS,
    Glue, KMS, CloudWatch, X-Ray and Secrets Manager."""

    #: The VPC of the subnets (the training jobs' CDK task adds a security group of its own there).
    vpc_id: Annotated[str, Field(pattern=_id("vpc"))]
    subnet_ids: Annotated[tuple[Annotated[str, Field(pattern=_id("subnet"))], ...], Field(min_length=1)]
    security_group_ids: Annotated[tuple[Annotated[str, Field(pattern=_id("sg"))], ...], Field(min_length=1)]

    def sagemaker(self) -> dict[str, Any]:
        """The ``VpcConfig`` of SageMaker's APIs (CreateTrainingJob, CreateModel)."""
        return {"SecurityGroupIds": list(self.security_group_ids), "Subnets": list(self.subnet_ids)}


class SecuritySettings(_Model):
    """Network placement, encryption keys and concurrency limits (README, "Security")."""

    #: None: everything runs outside any VPC (reaching only AWS APIs, over TLS, with IAM).
    vpc: VpcSettings | None = None
    #: The KMS key (ARN) of the endpoints' ML storage volumes and their data capture; None: the stack's
    #: own data key, by its alias (:meth:`endpoint_key`).
    endpoint_kms_key_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:kms:")] | None = None
    #: Reserve concurrency for each function (infra/functions.py): a burst of events cannot starve the
    #: account's other functions. Accounts with a Lambda concurrency quota below 1000 may need it off
    #: (Lambda keeps 100 unreserved).
    reserved_concurrency: bool = True

    def endpoint_key(self, prefix: str) -> str:
        """``KmsKeyId`` of endpoint configs and their ``DataCaptureConfig``: the key named in the settings,
        else the alias the stack gives its data key (SageMaker accepts aliases there)."""
        return self.endpoint_kms_key_arn or data_key_alias(prefix)

    @property
    def network_isolation(self) -> bool:
        """Training and evaluation jobs run network-isolated when they run in a VPC."""
        return self.vpc is not None


def data_key_alias(prefix: str) -> str:
    """The alias of the stack's customer-managed data key (infra/data_lake.py)."""
    return f"alias/{prefix}-data"
