"""checkov's acknowledged findings: the one table of the checks we do not fix, each with its reason.

The security gate (tests/infra/test_checkov.py, in CI) runs checkov's CloudFormation checks over the
synthesized template and fails on any failed check. A finding we accept is acknowledged here, not in the
gate: :class:`CheckovAcknowledgments` (an aspect on the stack) writes checkov's own suppression,
``Metadata: checkov: skip: [{id, comment}]``, on each resource an entry :attr:`Acknowledgment.applies`
to, with the entry's reason as the comment. Entries select resources by what the template says about them
(properties, not names), so an acknowledgment does not follow a resource that no longer deserves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

from mlcycle.config import Settings

#: The construct id of the CDK's singleton function that sets bucket notifications at deploy time.
BUCKET_NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"
#: Actions that support no resource-level permissions, which our policies grant on ``*``: X-Ray tracing,
#: Application Auto Scaling of the endpoint (its target is registered at run time), reading alarms and
#: describing the VPC. Any other action on ``*`` is not covered.
UNSCOPABLE_ACTIONS = frozenset(
    {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
        "cloudwatch:DescribeAlarms",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeVpcs",
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
    }
)


@dataclass(frozen=True)
class Acknowledgment:
    """checkov's ``check`` does not hold for the resources ``applies`` selects, for ``reason``."""

    check: str
    applies: Callable[[Settings, cdk.CfnResource], bool]
    reason: str


def _l2(resource: cdk.CfnResource) -> IConstruct:
    scope = resource.node.scope
    assert scope is not None
    return scope


def _is_cdk_handler(resource: cdk.CfnResource) -> bool:
    # The CDK builds it as a plain CfnResource of the function's type, not as a CfnFunction.
    return (
        resource.cfn_resource_type == "AWS::Lambda::Function"
        and _l2(resource).node.id == BUCKET_NOTIFICATIONS_HANDLER
    )


def _ours(resource: cdk.CfnResource) -> bool:
    """One of the functions FunctionFactory builds (every Lambda function but the CDK's own handler)."""
    return isinstance(resource, lambda_.CfnFunction) and not _is_cdk_handler(resource)


def has_on_failure_destination(resource: cdk.CfnResource) -> bool:
    """The function's asynchronous invocations that fail in the end go to an on-failure destination."""
    configs = [c for c in _l2(resource).node.find_all() if isinstance(c, lambda_.CfnEventInvokeConfig)]
    return any(
        isinstance(c.destination_config, lambda_.CfnEventInvokeConfig.DestinationConfigProperty)
        and c.destination_config.on_failure is not None
        for c in configs
    )


def _async_with_destination(settings: Settings, resource: cdk.CfnResource) -> bool:
    return _ours(resource) and has_on_failure_destination(resource)


def _synchronous_only(settings: Settings, resource: cdk.CfnResource) -> bool:
    return _ours(resource) and not has_on_failure_destination(resource)


def _cdk_handler(settings: Settings, resource: cdk.CfnResource) -> bool:
    return _is_cdk_handler(resource)


def _outside_vpc(settings: Settings, resource: cdk.CfnResource) -> bool:
    return _ours(resource) and settings.security.vpc is None


def _unreserved(settings: Settings, resource: cdk.CfnResource) -> bool:
    return _ours(resource) and not settings.security.reserved_concurrency


def _access_log_bucket(settings: Settings, resource: cdk.CfnResource) -> bool:
    """The bucket the other buckets' server access logs go to (and which does not log itself)."""
    if not isinstance(resource, s3.CfnBucket) or resource.logging_configuration is not None:
        return False
    stack, me = cdk.Stack.of(resource), {"Ref": cdk.Stack.of(resource).get_logical_id(resource)}
    targets = [
        stack.resolve(b.logging_configuration).get("destinationBucketName")
        for b in stack.node.find_all()
        if isinstance(b, s3.CfnBucket) and b.logging_configuration is not None
    ]
    return me in targets


def _expiring_table(settings: Settings, resource: cdk.CfnResource) -> bool:
    """A table of records that expire by TTL, without point-in-time recovery (infra.tables keep=False)."""
    if not isinstance(resource, dynamodb.CfnTable):
        return False
    stack = cdk.Stack.of(resource)
    ttl = stack.resolve(resource.time_to_live_specification) or {}
    recovery = stack.resolve(resource.point_in_time_recovery_specification) or {}
    return bool(ttl.get("enabled")) and not recovery.get("pointInTimeRecoveryEnabled")


def unscoped_statements(policy: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The Allow statements of a resolved policy document whose Resource is ``*``."""
    for statement in policy.get("Statement", []):
        resources = statement.get("Resource", [])
        if statement.get("Effect") == "Allow" and "*" in (
            resources if isinstance(resources, list) else [resources]
        ):
            yield statement


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement.get("Action", [])
    return set(actions if isinstance(actions, list) else [actions])


def _only_unscopable_actions_on_any_resource(settings: Settings, resource: cdk.CfnResource) -> bool:
    """A policy granting the endpoint's Application Auto Scaling, whose every action on ``*`` is one that
    supports no resource-level permissions (:data:`UNSCOPABLE_ACTIONS`)."""
    if not isinstance(resource, iam.CfnPolicy):
        return False
    document = cdk.Stack.of(resource).resolve(resource.policy_document)
    unscoped = set().union(*(_actions(s) for s in unscoped_statements(document)))
    return "application-autoscaling:RegisterScalableTarget" in unscoped and unscoped <= UNSCOPABLE_ACTIONS


_OUTSIDE_VPC = (
    "No VPC in the settings (security.vpc, off by default): the functions call only AWS APIs, over TLS "
    "and authorized by IAM, and keep out of a VPC that would need NAT or interface endpoints to reach them."
)
_CDK_HANDLER = (
    "The CDK's own handler that puts the landing bucket's notification configuration while the stack "
    "deploys; only CloudFormation invokes it (synchronously, as a custom resource), and it has no "
    "construct of ours to configure it through."
)

ACKNOWLEDGMENTS: tuple[Acknowledgment, ...] = (
    Acknowledgment(
        "CKV_AWS_116",  # Lambda dead-letter queue
        _async_with_destination,
        "Failed asynchronous invocations go to an on-failure destination (a KMS-encrypted SQS queue, "
        "AWS::Lambda::EventInvokeConfig), which supersedes a DeadLetterConfig and also records the error; "
        "checkov looks only at DeadLetterConfig.",
    ),
    Acknowledgment(
        "CKV_AWS_116",
        _synchronous_only,
        "Invoked only synchronously, by Step Functions tasks that retry and catch its errors into the "
        "pipeline's failure path; a dead-letter queue applies only to asynchronous invocations.",
    ),
    Acknowledgment("CKV_AWS_116", _cdk_handler, _CDK_HANDLER),
    Acknowledgment("CKV_AWS_115", _cdk_handler, _CDK_HANDLER),  # reserved concurrency
    Acknowledgment("CKV_AWS_117", _cdk_handler, _CDK_HANDLER),  # in a VPC
    Acknowledgment("CKV_AWS_117", _outside_vpc, _OUTSIDE_VPC),
    Acknowledgment(
        "CKV_AWS_115",
        _unreserved,
        "Reserved concurrency is turned off in the settings (security.reserved_concurrency), for accounts "
        "whose Lambda concurrency quota cannot spare it.",
    ),
    Acknowledgment(
        "CKV_AWS_18",  # S3 access logging
        _access_log_bucket,
        "This is the server access log bucket itself; logging it to itself would loop.",
    ),
    Acknowledgment(
        "CKV_AWS_28",  # DynamoDB point-in-time recovery
        _expiring_table,
        "Short-lived records that expire by TTL within a day (idempotency): nothing to recover to a point "
        "in time.",
    ),
    Acknowledgment(
        "CKV_AWS_111",  # IAM write access without constraints
        _only_unscopable_actions_on_any_resource,
        "Application Auto Scaling's RegisterScalableTarget and PutScalingPolicy take no resource ARN for a "
        "target registered at run time (the endpoint's variant); every other action this policy grants on "
        "'*' is one without resource-level permissions (X-Ray, DescribeAlarms).",
    ),
)


@jsii.implements(cdk.IAspect)
class CheckovAcknowledgments:
    """Writes checkov's suppressions (``Metadata: checkov: skip``) from :data:`ACKNOWLEDGMENTS`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, cdk.CfnResource):
            return
        skips = [
            {"id": a.check, "comment": a.reason} for a in ACKNOWLEDGMENTS if a.applies(self._settings, node)
        ]
        if skips:
            node.add_metadata("checkov", {"skip": skips})
