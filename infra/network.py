"""The optional VPC of the settings (mlcycle.security.VpcSettings) for SageMaker's jobs and models.

Existing subnets and security groups are imported by id: nothing is looked up at synth (no AWS calls) and
no VPC is created. The Lambda functions take the ids directly (infra/functions.py); the CDK's training
task needs an ``IVpc``, which is imported from its attributes here.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.gates import acknowledge, iam5_arn
from mlcycle.security import VpcSettings

#: Reading the VPC's network configuration: EC2's describe actions take no resource ARNs.
DESCRIBE_ACTIONS = (
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)
#: Managing the network interfaces it creates (Lambda: AWSLambdaVPCAccessExecutionRole's actions; SageMaker
#: also lets the jobs' hosts attach them).
LAMBDA_INTERFACE_ACTIONS = (
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
SAGEMAKER_INTERFACE_ACTIONS = (
    "ec2:DeleteNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterfacePermission",
)


def training_vpc_config(scope: Construct, vpc: VpcSettings) -> tasks.VpcConfig:
    """The training task's VPC: the settings' subnets (the task adds a security group of its own, to
    which :func:`add_security_groups` adds the settings')."""
    imported = ec2.Vpc.from_vpc_attributes(
        scope,
        "Vpc",
        vpc_id=vpc.vpc_id,
        availability_zones=[f"subnet-zone-{i}" for i, _ in enumerate(vpc.subnet_ids)],
        private_subnet_ids=list(vpc.subnet_ids),
    )
    subnets = [ec2.Subnet.from_subnet_id(scope, f"Subnet{i}", s) for i, s in enumerate(vpc.subnet_ids)]
    return tasks.VpcConfig(vpc=imported, subnets=ec2.SubnetSelection(subnets=subnets))


def add_security_groups(task: tasks.SageMakerCreateTrainingJob, vpc: VpcSettings) -> None:
    for i, group in enumerate(vpc.security_group_ids):
        task.add_security_group(
            ec2.SecurityGroup.from_security_group_id(task, f"SecurityGroup{i}", group, mutable=False)
        )


def processing_network(vpc: VpcSettings | None) -> dict[str, Any]:
    """``NetworkConfig`` of a processing job: isolated, in the VPC; none without a VPC."""
    if vpc is None:
        return {}
    return {"NetworkConfig": {"EnableNetworkIsolation": True, "VpcConfig": vpc.sagemaker()}}


def grant_network_interfaces(role: iam.Role, vpc: VpcSettings, interface_actions: tuple[str, ...]) -> None:
    """Network interfaces created only in the settings' subnets with their security groups, managed only
    among our account's interfaces; describing the VPC (no resource-level permissions)."""
    stack = cdk.Stack.of(role)
    interfaces = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["ec2:CreateNetworkInterface"],
            resources=[
                interfaces,
                *(
                    stack.format_arn(service="ec2", resource="subnet", resource_name=s)
                    for s in vpc.subnet_ids
                ),
                *(
                    stack.format_arn(service="ec2", resource="security-group", resource_name=g)
                    for g in vpc.security_group_ids
                ),
            ],
        )
    )
    role.add_to_policy(iam.PolicyStatement(actions=list(interface_actions), resources=[interfaces]))
    role.add_to_policy(iam.PolicyStatement(actions=list(DESCRIBE_ACTIONS), resources=["*"]))
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        iam5_arn(role, "ec2", "network-interface/*"),
        reason="Network interfaces in the settings' VPC are created and named by the service at run time "
        "(network-interface/*, created only in our subnets with our security groups); EC2's describe "
        "actions, X-Ray's and (for SageMaker) cloudwatch:PutMetricData, limited by namespace, have no "
        "resource-level permissions.",
    )
