"""One synthesized app shared by the whole infra suite.

The template is the session's one gated synth (``gated_assembly``: ``mlcycle synth`` with the CDK's
template validation, cdk-nag and cfn-lint on; tests/assembly.py), which the e2e platforms are provisioned
from too. The app is built again here, exactly as ``app.py`` builds it and with the same settings, but not
synthesized: its construct tree maps each construct to its logical id in that template.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.app_builder import build_app
from mlcycle.config import Settings
from tests.assembly import app_settings
from tests.infra.synthesized import Synthesized


@pytest.fixture(scope="session")
def infra_settings() -> Settings:
    """The example problem's defaults with one alert subscriber; independent of any mlcycle.toml."""
    return app_settings()


@pytest.fixture(scope="session")
def synthesized(
    infra_settings: Settings, gated_assembly: Path, tmp_path_factory: pytest.TempPathFactory
) -> Synthesized:
    _, stack = build_app(infra_settings, outdir=tmp_path_factory.mktemp("cdk.tree"))
    template_path = gated_assembly / stack.template_file
    template = json.loads(template_path.read_text())
    # The tree and the template are the same app: every resource of one has its logical id in the other.
    built = {stack.get_logical_id(c) for c in stack.node.find_all() if isinstance(c, cdk.CfnResource)}
    assert built == set(template["Resources"]), "the construct tree and the gated template differ"
    return Synthesized(
        settings=infra_settings,
        stack=stack,
        template=Template.from_json(template),
        template_path=template_path,
        assembly_dir=gated_assembly,
    )
