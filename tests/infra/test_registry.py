from __future__ import annotations

from tests.infra.synthesized import Synthesized, function_by_handler


def test_model_package_group_is_named_from_settings(synthesized: Synthesized) -> None:
    _, group = synthesized.one("AWS::SageMaker::ModelPackageGroup")
    assert group["Properties"]["ModelPackageGroupName"] == synthesized.settings.model_package_group


def test_registry_grants_cover_each_use_without_hand_written_statements(synthesized: Synthesized) -> None:
    # GIVEN the three functions that use the registry

    def actions_of(handler: str) -> set[str]:
        role = function_by_handler(synthesized, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
        found: set[str] = set()
        for policy in synthesized.resources("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"]["Roles"]:
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    actions = statement["Action"]
                    found |= {
                        a
                        for a in ([actions] if isinstance(actions, str) else actions)
                        if a.startswith("sagemaker:") and "ModelPackage" in a
                    }
        return found

    # THEN each gets what its grant names: deploy describes, validate finds the champion, register registers
    assert actions_of("functions.deploy_model.handler") == {"sagemaker:DescribeModelPackage"}
    assert actions_of("functions.validate_run.handler") == {
        "sagemaker:DescribeModelPackage",
        "sagemaker:ListModelPackages",
    }
    assert actions_of("functions.register_model.handler") >= {
        "sagemaker:CreateModelPackage",
        "sagemaker:UpdateModelPackage",
        "sagemaker:ListModelPackages",
        "sagemaker:DescribeModelPackageGroup",
    }
