from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from infra.serving import Serving
from mlcycle.config import Settings
from tests.infra.bare import arn, bare_stack, granted, grantee, siblings
from tests.infra.synthesized import Synthesized, function_by_handler


def _rule(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.properties(synthesized.stack.serving.approved)


def test_approved_versions_of_our_group_on_the_default_bus_trigger_deploy(synthesized: Synthesized) -> None:
    rule = _rule(synthesized)
    assert "EventBusName" not in rule  # AWS's own SageMaker events arrive on the default bus
    assert rule["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {
            "ModelPackageGroupName": [synthesized.settings.model_package_group],
            "ModelApprovalStatus": ["Approved"],
        },
    }
    (target,) = rule["Targets"]
    deploy_id = synthesized.logical_id(synthesized.stack.serving.deploy_model)
    assert target["Arn"] == {"Fn::GetAtt": [deploy_id, "Arn"]}
    assert "DeadLetterConfig" in target
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 3


def test_deploy_model_gets_the_sagemaker_role_and_may_pass_it(synthesized: Synthesized) -> None:
    role_id = synthesized.logical_id(synthesized.stack.training.sagemaker_role)
    variables = function_by_handler(synthesized, "functions.deploy_model.handler")["Properties"][
        "Environment"
    ]["Variables"]
    assert variables["MLCYCLE_SAGEMAKER_ROLE_ARN"] == {"Fn::GetAtt": [role_id, "Arn"]}
    fn_role = synthesized.stack.serving.deploy_model.role
    assert fn_role is not None
    fn_role_id = synthesized.logical_id(fn_role)
    statements = [
        s
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if {"Ref": fn_role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = {
        a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert {
        "iam:PassRole",
        "sagemaker:CreateModel",
        "sagemaker:CreateEndpointConfig",
        "sagemaker:CreateEndpoint",
        "sagemaker:UpdateEndpoint",
        "sagemaker:DescribeEndpoint",
        "sagemaker:DescribeModelPackage",
        "sagemaker:AddTags",
    } <= actions
    assert "events:PutEvents" not in actions  # the outcome function announces how a deployment ended


def test_the_outcome_of_each_deployment_is_concluded_from_the_endpoint_state(
    synthesized: Synthesized,
) -> None:
    serving = synthesized.stack.serving
    rule = synthesized.properties(serving.state_changed)
    assert rule["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Endpoint State Change"],
        "detail": {"EndpointName": [synthesized.settings.endpoint_name], "EndpointStatus": ["InService"]},
    }
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [synthesized.logical_id(serving.deployment_outcome), "Arn"]}
    assert "DeadLetterConfig" in target


def _bare_serving(settings: Settings) -> tuple[cdk.Stack, Serving, iam.Role]:
    """Serving in a stack with only what it needs (a bare execution role), and a role to grant to."""
    stack = bare_stack()
    shared = siblings(stack, settings)
    sagemaker_role = iam.Role(
        stack, "SageMakerRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com")
    )
    serving = Serving(
        stack,
        "Serving",
        settings=settings,
        data_lake=shared.data_lake,
        registry=shared.registry,
        bus=shared.bus,
        sagemaker_role=sagemaker_role,
        functions=shared.functions,
    )
    return stack, serving, grantee(stack)


def _deployed(settings: Settings) -> set[str]:
    """The endpoint, and the models and endpoint configs named under the prefix (one per version)."""
    return {
        arn("sagemaker", f"model/{settings.prefix}-*"),
        arn("sagemaker", f"endpoint-config/{settings.prefix}-*"),
        arn("sagemaker", f"endpoint/{settings.endpoint_name}"),
    }


def test_grant_deploy_creates_and_updates_the_endpoint_and_its_versions(infra_settings: Settings) -> None:
    # GIVEN serving in a bare stack and a role
    stack, serving, role = _bare_serving(infra_settings)
    # WHEN the role is granted deploying
    serving.grant_deploy(role)
    # THEN it may create, describe and update what serving deploys, and tag it (reading tags says which
    # config a shadow was added to); on nothing else
    deployed = _deployed(infra_settings)
    actions = (
        *("sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint"),
        *("sagemaker:UpdateEndpoint", "sagemaker:AddTags", "sagemaker:ListTags"),
        *("sagemaker:DescribeModel", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeEndpoint"),
    )
    assert granted(stack, role) == dict.fromkeys(actions, deployed)


def test_grant_conclude_deployments_reads_and_untags_only(infra_settings: Settings) -> None:
    # GIVEN serving in a bare stack and a role
    stack, serving, role = _bare_serving(infra_settings)
    # WHEN the role is granted concluding deployments
    serving.grant_conclude_deployments(role)
    # THEN it may read what serving deployed with its tags and remove a tag, but create or update nothing
    deployed = _deployed(infra_settings)
    actions = (
        *("sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"),
        *("sagemaker:ListTags", "sagemaker:DeleteTags"),
    )
    assert granted(stack, role) == dict.fromkeys(actions, deployed)


def test_grant_scale_endpoint_registers_the_variant_and_its_tracking_alarms_only(
    infra_settings: Settings,
) -> None:
    # GIVEN serving in a bare stack and a role, WHEN the role is granted scaling the endpoint
    stack, serving, role = _bare_serving(infra_settings)
    serving.grant_scale_endpoint(role)
    statements = [
        statement
        for policy in Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_action = {
        action: s
        for s in statements
        for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    # THEN Application Auto Scaling (no resource-level permissions) on any resource
    assert by_action["application-autoscaling:RegisterScalableTarget"]["Resource"] == "*"
    assert by_action["application-autoscaling:PutScalingPolicy"]["Resource"] == "*"
    # AND the alarms target tracking creates, under the endpoint's name only
    alarm = json.dumps(by_action["cloudwatch:PutMetricAlarm"]["Resource"])
    assert f"alarm:TargetTracking-endpoint/{infra_settings.endpoint_name}/*" in alarm
    # AND its service-linked role, for that service only
    linked = by_action["iam:CreateServiceLinkedRole"]
    assert linked["Condition"] == {
        "StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }
