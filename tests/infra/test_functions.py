"""Every function is built the one way: runtime, architecture, tracing, layers, logs, explicit env."""

from __future__ import annotations

from typing import Any

import pytest

from mlcycle.names import Env
from tests.infra.synthesized import Synthesized, function_by_handler

HANDLERS = {
    "functions.prepare_data.handler": {
        *(Env.CURATED_BUCKET, Env.EVENT_BUS, Env.GLUE_DATABASE, Env.IDEMPOTENCY_TABLE),
        *(Env.LINEAGE_TABLE, Env.LARGE_UPLOAD_STATE_MACHINE),
    },
    "functions.build_training_set.handler": {
        *(Env.CURATED_BUCKET, Env.ARTIFACTS_BUCKET, Env.LINEAGE_TABLE),
        *(Env.FEATURES_BUCKET, Env.GLUE_DATABASE),  # point-in-time features (the example declares views)
    },
    "functions.register_model.handler": {Env.ARTIFACTS_BUCKET, Env.EVENT_BUS, Env.LINEAGE_TABLE},
    "functions.deploy_model.handler": {
        Env.MONITORING_BUCKET,
        Env.SAGEMAKER_ROLE_ARN,
        Env.LINEAGE_TABLE,
        Env.ROLLBACK_ALARMS,
    },
}
POWERTOOLS_PARAMETER = "/aws/service/powertools/python/x86_64/python3.13/latest"


@pytest.mark.parametrize("handler", sorted(HANDLERS))
def test_function_shape(synthesized: Synthesized, handler: str) -> None:
    props = function_by_handler(synthesized, handler)["Properties"]
    settings = synthesized.settings.functions
    assert props["Runtime"] == f"python{settings.python}"
    assert props["Architectures"] == ["x86_64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["MemorySize"] == settings.memory_mb
    assert props["Timeout"] == settings.timeout_seconds
    assert "LogGroup" in props["LoggingConfig"]


@pytest.mark.parametrize(("handler", "names"), sorted(HANDLERS.items()))
def test_function_gets_only_the_variables_it_uses(
    synthesized: Synthesized, handler: str, names: set[str]
) -> None:
    variables = function_by_handler(synthesized, handler)["Properties"]["Environment"]["Variables"]
    assert set(variables) == names | {Env.SERVICE_NAME}


def test_layers_are_powertools_by_ssm_parameter_and_sdk_for_pandas(synthesized: Synthesized) -> None:
    parameters = synthesized.template.to_json()["Parameters"]
    powertools = [name for name, p in parameters.items() if p.get("Default") == POWERTOOLS_PARAMETER]
    assert len(powertools) == 1
    assert parameters[powertools[0]]["Type"] == "AWS::SSM::Parameter::Value<String>"
    pandas = {
        "Fn::Join": [
            "",
            [
                "arn:aws:lambda:",
                {"Ref": "AWS::Region"},
                f":336392948345:layer:AWSSDKPandas-Python313:{synthesized.settings.functions.pandas_layer_version}",
            ],
        ]
    }
    for handler in HANDLERS:
        layers = function_by_handler(synthesized, handler)["Properties"]["Layers"]
        assert layers == [{"Ref": powertools[0]}, pandas]


def test_all_functions_share_one_code_asset(synthesized: Synthesized) -> None:
    code = {str(function_by_handler(synthesized, h)["Properties"]["Code"]) for h in HANDLERS}
    assert len(code) == 1


def test_log_groups_are_kms_encrypted_with_the_configured_retention(synthesized: Synthesized) -> None:
    key_id = synthesized.logical_id(synthesized.stack.data_lake.key)
    groups = synthesized.resources("AWS::Logs::LogGroup")
    owners = synthesized.resources("AWS::Lambda::Function") | synthesized.resources(
        "AWS::StepFunctions::StateMachine"
    )
    # One per function and state machine, but the CDK's bucket-notifications handler, which logs by default.
    assert len(groups) == len(owners) - 1
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == synthesized.settings.log_retention_days
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_no_managed_policies_on_our_function_roles(synthesized: Synthesized) -> None:
    for handler in HANDLERS:
        role_id = function_by_handler(synthesized, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
        role = synthesized.resources("AWS::IAM::Role")[role_id]
        assert "ManagedPolicyArns" not in role["Properties"]


def test_each_function_role_writes_logs_to_its_own_log_group_only(synthesized: Synthesized) -> None:
    for fn in synthesized.resources("AWS::Lambda::Function").values():
        if "LoggingConfig" not in fn["Properties"]:
            continue  # the CDK's bucket-notifications handler
        role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        log_group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        logging = [
            statement
            for policy in synthesized.resources("AWS::IAM::Policy").values()
            if {"Ref": role} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if any(action.startswith("logs:") for action in _actions(statement))
        ]
        assert logging == [
            {
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Effect": "Allow",
                "Resource": {"Fn::GetAtt": [log_group, "Arn"]},
            }
        ]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


@pytest.mark.parametrize("handler", ["functions.prepare_data.handler", "functions.deploy_model.handler"])
def test_asynchronous_functions_have_an_on_failure_queue_and_retries(
    synthesized: Synthesized, handler: str
) -> None:
    fn_id = next(
        name
        for name, fn in synthesized.resources("AWS::Lambda::Function").items()
        if fn["Properties"].get("Handler") == handler
    )
    configs = [
        c["Properties"]
        for c in synthesized.resources("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": fn_id}
    ]
    assert len(configs) == 1
    assert configs[0]["MaximumRetryAttempts"] == 2
    destination = configs[0]["DestinationConfig"]["OnFailure"]["Destination"]
    queue_id = destination["Fn::GetAtt"][0]
    queue = synthesized.resources("AWS::SQS::Queue")[queue_id]["Properties"]
    key_id = synthesized.logical_id(synthesized.stack.data_lake.key)
    assert queue["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
