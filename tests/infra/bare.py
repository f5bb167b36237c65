"""Bare stacks for construct tests: the construct under test with only what it needs, and what its grants
gave a grantee, read from the template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template
from constructs import IConstruct

from infra.app_builder import FEATURE_FLAGS
from infra.data_lake import DataLake
from infra.functions import FunctionFactory
from infra.registry import ModelRegistry
from mlcycle.config import Settings


def bare_stack() -> cdk.Stack:
    """A stack in an app with our feature flags; no asset is bundled (no grant test reads one)."""
    app = cdk.App(context={**FEATURE_FLAGS, "aws:cdk:bundling-stacks": []})
    return cdk.Stack(app, "Bare")


@dataclass(frozen=True)
class Siblings:
    """What the stage constructs take from the stack around them."""

    data_lake: DataLake
    registry: ModelRegistry
    bus: events.EventBus
    functions: FunctionFactory


def siblings(stack: cdk.Stack, settings: Settings) -> Siblings:
    lake = DataLake(stack, "DataLake", settings=settings)
    return Siblings(
        data_lake=lake,
        registry=ModelRegistry(stack, "Registry", settings=settings),
        bus=events.EventBus(stack, "Bus"),
        functions=FunctionFactory(stack, "Functions", settings=settings, key=lake.key),
    )


def grantee(stack: cdk.Stack) -> iam.Role:
    return iam.Role(stack, "Grantee", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))


def granted(stack: cdk.Stack, role: iam.IRole) -> dict[str, set[str]]:
    """Action -> the resources the role's policies allow it on, ARNs spelled out (``${AWS::Region}``).

    The grants tested here carry no conditions; a statement with one fails the test rather than being
    read as unconditional.
    """
    role_id = _logical_id(role)
    allowed: dict[str, set[str]] = {}
    for policy in Template.from_stack(stack).find_resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow" and "Condition" not in statement, statement
            for action in _as_list(statement["Action"]):
                allowed.setdefault(action, set()).update(_text(r) for r in _as_list(statement["Resource"]))
    return allowed


def arn(service: str, resource: str) -> str:
    """An ARN in the stack's account and region, spelled as :func:`granted` spells it."""
    return f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{resource}"


def arn_of(resource: IConstruct) -> str:
    """A resource's ARN (``Fn::GetAtt``), spelled as :func:`granted` spells it."""
    return f"${{{_logical_id(resource)}.Arn}}"


def _logical_id(resource: IConstruct) -> str:
    return cdk.Stack.of(resource).get_logical_id(cast(cdk.CfnElement, resource.node.default_child))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    """``Fn::Join`` and ``Ref``/``Fn::GetAtt`` tokens written out (``${AWS::Region}``, ``${Id.Arn}``)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_text(part) for part in parts)
    if "Ref" in value:
        return f"${{{value['Ref']}}}"
    if "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    raise ValueError(f"unexpected token {value!r}")
