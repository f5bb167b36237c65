"""DynamoDB tables built one way: on demand, encrypted with the platform's key, named by CloudFormation."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.gates import acknowledge


def encrypted_table(
    scope: Construct,
    id: str,
    *,
    key: kms.IKey,
    partition_key: str,
    sort_key: str | None = None,
    ttl_attribute: str | None = None,
    keep: bool = True,
) -> dynamodb.Table:
    """A PAY_PER_REQUEST table under ``key``. ``keep``: records worth keeping get point-in-time
    recovery and outlive the stack; short-lived ones (idempotency) get neither, acknowledged."""
    table = dynamodb.Table(
        scope,
        id,
        partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name=sort_key, type=dynamodb.AttributeType.STRING) if sort_key else None,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        time_to_live_attribute=ttl_attribute,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=keep
        ),
        removal_policy=cdk.RemovalPolicy.RETAIN if keep else cdk.RemovalPolicy.DESTROY,
    )
    if not keep:
        acknowledge(
            table,
            "AwsSolutions-DDB3",
            reason="Short-lived records that expire by TTL within a day: "
            "nothing to recover to a point in time.",
        )
    return table
