from __future__ import annotations

from typing import Any

import pytest

from mlcycle.local.cloudformation.template import Created, Scope, TemplateError, creation_order, resolve

TEMPLATE = {
    "Conditions": {"IsEast": {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}},
    "Mappings": {"Images": {"us-east-1": {"account": "683313688378"}}},
}


def _scope() -> Scope:
    scope = Scope(
        template=TEMPLATE, pseudo={"AWS::Region": "us-east-1", "AWS::AccountId": "1"}, parameters={"P": "v"}
    )
    scope.resources["Bucket"] = Created("my-bucket", {"Arn": "arn:aws:s3:::my-bucket"})
    return scope


def test_intrinsics() -> None:
    scope = _scope()
    value = {
        "join": {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/*"]]},
        "sub": {"Fn::Sub": "${Bucket}-${AWS::Region}-${P}-${Bucket.Arn}"},
        "sub_vars": {"Fn::Sub": ["${x}!", {"x": {"Ref": "P"}}]},
        "select": {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]},
        "if": {"Fn::If": ["IsEast", "east", "west"]},
        "map": {"Fn::FindInMap": ["Images", {"Ref": "AWS::Region"}, "account"]},
        "gone": {"Ref": "AWS::NoValue"},
        "list": [1, {"Ref": "AWS::NoValue"}, 2],
    }
    assert resolve(value, scope) == {
        "join": "arn:aws:s3:::my-bucket/*",
        "sub": "my-bucket-us-east-1-v-arn:aws:s3:::my-bucket",
        "sub_vars": "v!",
        "select": "b",
        "if": "east",
        "map": "683313688378",
        "list": [1, 2],
    }


def test_dangling_references_fail() -> None:
    with pytest.raises(TemplateError, match="Ref to 'Missing'"):
        resolve({"Ref": "Missing"}, _scope())
    with pytest.raises(TemplateError, match="no attribute"):
        resolve({"Fn::GetAtt": ["Bucket", "Nope"]}, _scope())


def test_creation_order_respects_references_and_depends_on() -> None:
    resources: dict[str, dict[str, Any]] = {
        "Policy": {"Properties": {"Roles": [{"Ref": "Role"}]}},
        "Fn": {"DependsOn": ["Policy"], "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}}},
        "Role": {"Properties": {}},
        "Sm": {"Properties": {"Def": {"Fn::Sub": "${Fn.Arn}"}}},
    }
    order = creation_order(resources)
    assert order.index("Role") < order.index("Policy") < order.index("Fn") < order.index("Sm")
    with pytest.raises(TemplateError, match="circular"):
        creation_order({"A": {"Properties": {"x": {"Ref": "B"}}}, "B": {"Properties": {"x": {"Ref": "A"}}}})
