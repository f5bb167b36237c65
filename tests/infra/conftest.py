"""One synthesized app shared by the whole infra suite.

The app is built exactly as ``app.py`` builds it (cdk-nag gate included) and synthesized once per
session with the CDK's template validation off (``CDK_VALIDATION=false``, ~10 s saved); every test module
asserts on that one template.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from aws_cdk.assertions import Template

from infra.app_builder import build_app, template_path
from infra.stack import MlcycleStack
from mlcycle.application.settings import example_settings
from mlcycle.config import AlertChannels, Settings

ALERT_EMAIL = "ops@example.com"


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


@pytest.fixture(scope="session")
def infra_settings() -> Settings:
    """The example problem's defaults with one alert subscriber; independent of any mlcycle.toml."""
    return example_settings().model_copy(update={"alerts": AlertChannels(emails=(ALERT_EMAIL,))})


@pytest.fixture(scope="session")
def synthesized(infra_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CDK_VALIDATION", "false")
        env.setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
        app, stack = build_app(infra_settings, outdir=outdir)
        assembly = app.synth()  # cdk-nag runs here: an unacknowledged finding fails the whole suite
        yield Synthesized(
            settings=infra_settings,
            stack=stack,
            template=Template.from_stack(stack),
            template_path=template_path(assembly, stack),
            assembly_dir=Path(assembly.directory),
        )


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
