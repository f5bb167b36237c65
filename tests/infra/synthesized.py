"""The synthesized app as the infra tests read it: the gated template, and the construct tree that maps the
app's constructs to their logical ids in it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aws_cdk.assertions import Template

from infra.stack import MlcycleStack
from mlcycle.config import Settings


@dataclass(frozen=True)
class Synthesized:
    settings: Settings
    stack: MlcycleStack
    template: Template
    template_path: Path
    assembly_dir: Path

    def resources(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {name: dict(resource) for name, resource in self.template.find_resources(cfn_type).items()}

    def one(self, cfn_type: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(cfn_type)
        assert len(found) == 1, f"expected one {cfn_type}, found {sorted(found)}"
        return next(iter(found.items()))

    def properties(self, construct: Any) -> dict[str, Any]:
        """The Properties of the CloudFormation resource behind an L2 construct."""
        logical_id = self.logical_id(construct)
        resource = self.template.to_json()["Resources"][logical_id]
        return cast(dict[str, Any], resource["Properties"])

    def logical_id(self, construct: Any) -> str:
        return self.stack.get_logical_id(construct.node.default_child)


def definition(synthesized: Synthesized) -> dict[str, Any]:
    """The state machine's definition as JSON, each CloudFormation token replaced by ``"<token>"``."""
    machine = {"Properties": synthesized.properties(synthesized.stack.training.state_machine)}
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else "<token>" for part in parts)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def function_by_handler(synthesized: Synthesized, handler: str) -> dict[str, Any]:
    matches = [
        fn
        for fn in synthesized.resources("AWS::Lambda::Function").values()
        if fn["Properties"].get("Handler") == handler
    ]
    assert len(matches) == 1, f"expected one function with handler {handler}"
    return matches[0]
