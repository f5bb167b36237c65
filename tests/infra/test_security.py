"""The security gates over the session's gated template: checkov with zero unacknowledged failures, IAM
without wildcard actions, no secret in the template; and the optional VPC."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb

from infra.app_builder import FEATURE_FLAGS, compose, synth_and_check
from infra.checkov import ACKNOWLEDGMENTS, CheckovAcknowledgments
from mlcycle.config import Settings
from mlcycle.security import CODE_CHANNEL, SecuritySettings, VpcSettings
from tests.infra import checkov
from tests.infra.synthesized import Synthesized, definition

#: Actions our identity policies may grant on Resource "*": those that support no resource-level
#: permissions, none of them on data (the X-Ray, Logs delivery, auto scaling and network-interface APIs,
#: listing model packages and reading tags, metrics limited by a namespace condition, describing the VPC).
NO_RESOURCE_LEVEL = frozenset(
    {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "logs:CreateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:DescribeLogGroups",
        "logs:DescribeResourcePolicies",
        "logs:GetLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:UpdateLogDelivery",
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
        "application-autoscaling:PutScalingPolicy",
        "application-autoscaling:RegisterScalableTarget",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:PutMetricData",
        "sagemaker:ListModelPackages",
        "sagemaker:ListTags",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeVpcs",
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
    }
)
#: Services whose resources hold data or keys.
DATA_SERVICES = ("s3", "dynamodb", "kms", "sqs", "sns", "secretsmanager", "glue", "athena", "ssm")
#: Environment variable names and values that would be credentials, not resource names.
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|WEBHOOK|ROUTING_KEY|API_KEY", re.I)
SECRET_VALUE = re.compile(
    r"https?://|hooks\.slack\.com|pagerduty|AKIA[0-9A-Z]{16}|-----BEGIN|^[A-Za-z0-9+/=_-]{32,}$"
)

VPC = VpcSettings(
    vpc_id="vpc-0abc1234",
    subnet_ids=("subnet-0a1b2c3d", "subnet-0123456789abcdef0"),
    security_group_ids=("sg-0c3d4e5f",),
)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _identity_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        documents = {
            "AWS::IAM::Policy": lambda p: [p["PolicyDocument"]],
            "AWS::IAM::ManagedPolicy": lambda p: [p["PolicyDocument"]],
            "AWS::IAM::Role": lambda p: [policy["PolicyDocument"] for policy in p.get("Policies", [])],
        }.get(resource["Type"], lambda p: [])(props)
        found += [(logical_id, s) for d in documents for s in d["Statement"] if s["Effect"] == "Allow"]
    return found


def _wildcard(action: str) -> bool:
    return action == "*" or action.endswith(":*")


# checkov ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(synthesized: Synthesized) -> dict[str, Any]:
    return checkov.scan(synthesized.template_path)


def test_checkov_finds_no_unacknowledged_failure(report: dict[str, Any]) -> None:
    failed = report["results"]["failed_checks"]
    listed = "\n".join(f"{f['check_id']} {f['resource']}: {f['check_name']}" for f in failed)
    assert not failed, (
        f"checkov {report['summary']['checkov_version']}: {len(failed)} failed checks; fix them, or "
        f"acknowledge them with a reason in infra/checkov.py (ACKNOWLEDGMENTS):\n{listed}"
    )
    assert report["summary"]["passed"] > 400 and report["summary"]["parsing_errors"] == 0


def test_every_skipped_check_is_acknowledged_with_its_reason(report: dict[str, Any]) -> None:
    reasons = {(a.check, a.reason) for a in ACKNOWLEDGMENTS}
    skipped = report["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        assert (check["check_id"], check["check_result"]["suppress_comment"]) in reasons, check["resource"]


def test_functions_invoked_asynchronously_have_an_on_failure_destination(synthesized: Synthesized) -> None:
    # The reason checkov's dead-letter check (CKV_AWS_116) is acknowledged: asynchronous invocations of
    # our functions (EventBridge, S3, SNS) end in an on-failure destination; the others are synchronous.
    resources = synthesized.template.to_json()["Resources"]
    invoked_async = {
        r["Properties"]["FunctionName"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["Principal"] in ("events.amazonaws.com", "s3.amazonaws.com", "sns.amazonaws.com")
    }
    with_destination = {
        r["Properties"]["FunctionName"]["Ref"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"].get("DestinationConfig", {}).get("OnFailure")
    }
    assert invoked_async and invoked_async <= with_destination


# IAM --------------------------------------------------------------------------------------------------


def test_no_iam_statement_grants_wildcard_actions(synthesized: Synthesized) -> None:
    template = synthesized.template.to_json()
    granted = [
        (logical_id, action)
        for logical_id, statement in _identity_statements(template)
        for action in _as_list(statement["Action"])
        if _wildcard(action)
    ]
    assert not granted
    # Resource policies: only the CDK's key policy delegates the key to the account's IAM (kms:* to root).
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        document = props.get("PolicyDocument") or props.get("KeyPolicy")
        if resource["Type"].startswith("AWS::IAM::") or not isinstance(document, dict):
            continue
        for statement in document.get("Statement", []):
            if statement["Effect"] == "Allow" and any(_wildcard(a) for a in _as_list(statement["Action"])):
                assert resource["Type"] == "AWS::KMS::Key", logical_id
                assert ":root" in json.dumps(statement["Principal"]), logical_id


def test_actions_on_any_resource_are_none_on_data(synthesized: Synthesized) -> None:
    for logical_id, statement in _identity_statements(synthesized.template.to_json()):
        if "*" not in _as_list(statement.get("Resource", [])):
            continue
        for action in _as_list(statement["Action"]):
            assert action.split(":")[0] not in DATA_SERVICES, (logical_id, action)
            assert action in NO_RESOURCE_LEVEL, (logical_id, action)


# Secrets ----------------------------------------------------------------------------------------------


def test_no_environment_variable_holds_a_secret(synthesized: Synthesized) -> None:
    functions = synthesized.resources("AWS::Lambda::Function")
    seen = 0
    for logical_id, fn in functions.items():
        for name, value in fn["Properties"].get("Environment", {}).get("Variables", {}).items():
            seen += 1
            assert not SECRET_NAME.search(name), (logical_id, name)
            if isinstance(value, str):  # tokens (Ref, GetAtt) name resources CloudFormation made
                assert not SECRET_VALUE.search(value), (logical_id, name)
    assert seen > 30


def test_function_environments_are_encrypted_with_the_platform_key(synthesized: Synthesized) -> None:
    key = synthesized.logical_id(synthesized.stack.data_lake.key)
    for logical_id, fn in synthesized.resources("AWS::Lambda::Function").items():
        if fn["Properties"].get("Environment"):
            assert fn["Properties"]["KmsKeyArn"] == {"Fn::GetAtt": [key, "Arn"]}, logical_id


def test_state_machines_log_no_execution_data(synthesized: Synthesized) -> None:
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    assert machines
    for machine in machines.values():
        assert machine["Properties"]["LoggingConfiguration"]["IncludeExecutionData"] is False


# Concurrency ------------------------------------------------------------------------------------------


def test_functions_reserve_concurrency_and_their_tasks_wait_for_it(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    for logical_id, fn in synthesized.resources("AWS::Lambda::Function").items():
        if "BucketNotificationsHandler" not in logical_id:
            assert fn["Properties"]["ReservedConcurrentExecutions"] >= 1, logical_id
    # A Distributed Map runs up to MaxConcurrency chunks at once: the chunk function reserves as many.
    chunk = synthesized.properties(stack.data_preparation.check_chunk)
    assert chunk["ReservedConcurrentExecutions"] == 20
    states = definition(synthesized)["States"]
    for name in ("ValidateRun", "BuildTrainingSet", "CheckModelTests", "RegisterModel", "ReportFailure"):
        errors = {e for retry in states[name].get("Retry", []) for e in retry["ErrorEquals"]}
        assert "Lambda.TooManyRequestsException" in errors, name


# KMS on endpoints -------------------------------------------------------------------------------------


def test_the_data_key_has_the_alias_deployments_name_it_by(synthesized: Synthesized) -> None:
    _, alias = synthesized.one("AWS::KMS::Alias")
    assert alias["Properties"]["AliasName"] == f"alias/{synthesized.settings.prefix}-data"
    assert SecuritySettings().endpoint_key(synthesized.settings.prefix) == alias["Properties"]["AliasName"]
    key = synthesized.logical_id(synthesized.stack.data_lake.key)
    assert alias["Properties"]["TargetKeyId"] == {"Fn::GetAtt": [key, "Arn"]}


# The optional VPC ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vpc_template(infra_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = infra_settings.model_copy(update={"security": SecuritySettings(vpc=VPC)})
    # The gates (cdk-nag while synthesizing, then cfn-lint) without bundling the assets: none is read here.
    app = cdk.App(
        outdir=str(tmp_path_factory.mktemp("vpc")),
        context={**FEATURE_FLAGS, "aws:cdk:bundling-stacks": []},
    )
    path = synth_and_check(app, compose(app, settings))
    document: dict[str, Any] = json.loads(path.read_text())
    document["__path__"] = str(path)
    return document


def test_with_a_vpc_functions_and_jobs_run_in_it_and_training_is_isolated(
    vpc_template: dict[str, Any],
) -> None:
    resources = vpc_template["Resources"]
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function" and "BucketNotificationsHandler" not in logical_id:
            assert resource["Properties"]["VpcConfig"] == {
                "SubnetIds": list(VPC.subnet_ids),
                "SecurityGroupIds": list(VPC.security_group_ids),
            }, logical_id
    [machine] = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
        and "TrainModel" in json.dumps(r["Properties"]["DefinitionString"])
    ]
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "<token>" for p in parts)
    states = json.loads(text)["States"]
    train = states["TrainModel"]["Parameters"]
    assert train["EnableNetworkIsolation"] is True
    assert train["VpcConfig"]["Subnets"] == list(VPC.subnet_ids)
    assert "sg-0c3d4e5f" in json.dumps(train["VpcConfig"]["SecurityGroupIds"])
    [code] = [c for c in train["InputDataConfig"] if c["ChannelName"] == CODE_CHANNEL]
    # The toolkit extracts the sourcedir from where SageMaker put the channel's one object.
    submit = train["HyperParameters"]["sagemaker_submit_directory"]
    assert submit.startswith(f"/opt/ml/input/data/{CODE_CHANNEL}/")
    assert code["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"  # the one sourcedir object
    evaluate = states["EvaluateModel"]["Parameters"]
    assert evaluate["NetworkConfig"] == {"EnableNetworkIsolation": True, "VpcConfig": VPC.sagemaker()}


def test_with_a_vpc_checkov_still_finds_no_unacknowledged_failure(vpc_template: dict[str, Any]) -> None:
    report = checkov.scan(Path(vpc_template["__path__"]))
    failed = [f"{f['check_id']} {f['resource']}" for f in report["results"]["failed_checks"]]
    assert not failed
    # In the VPC, only the CDK's deploy-time handler remains outside it.
    outside = [s["resource"] for s in report["results"]["skipped_checks"] if s["check_id"] == "CKV_AWS_117"]
    assert len(outside) == 1 and "BucketNotificationsHandler" in outside[0]


def test_the_gate_gates_and_acknowledgments_follow_properties(
    tmp_path: Path, infra_settings: Settings
) -> None:
    # GIVEN two tables without point-in-time recovery, one of them of expiring records (TTL), with the
    # stack's acknowledgments
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Bare")
    for id, ttl in (("Expiring", "expiration"), ("Kept", None)):
        dynamodb.Table(
            stack,
            id,
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute=ttl,
        )
    cdk.Aspects.of(stack).add(CheckovAcknowledgments(infra_settings))
    app.synth()
    # WHEN checkov scans the template
    report = checkov.scan(tmp_path / "Bare.template.json")
    failed = [f["resource"] for f in report["results"]["failed_checks"] if f["check_id"] == "CKV_AWS_28"]
    skipped = [s["resource"] for s in report["results"]["skipped_checks"] if s["check_id"] == "CKV_AWS_28"]
    # THEN the kept table's missing recovery fails the gate; the expiring table's is acknowledged
    assert len(failed) == 1 and "Kept" in failed[0]
    assert len(skipped) == 1 and "Expiring" in skipped[0]
