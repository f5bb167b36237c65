from __future__ import annotations

from typing import Any

from tests.infra.conftest import Synthesized, function_by_handler


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
