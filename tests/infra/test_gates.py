"""The gates pass on the synthesized app, and they do gate: an unacknowledged finding fails the synth."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from infra.app_builder import synth
from infra.gates import GateError, acknowledge, add_gates, check_template
from mlcycle.config import Settings
from tests.assembly import GATED_RECORD
from tests.infra.synthesized import Synthesized


def test_cdk_nag_passed(synthesized: Synthesized) -> None:
    # The gated synth (``mlcycle synth``) would have failed on any unacknowledged finding; a report, if the
    # CDK wrote one, must say so too.
    report = synthesized.assembly_dir / "validation-report.json"
    if report.exists():
        for plugin in json.loads(report.read_text())["pluginReports"]:
            assert plugin["conclusion"] == "success", plugin


def test_cfn_lint_is_clean(synthesized: Synthesized) -> None:
    # The gated synth ran cfn-lint on this very template (``check_template``: any finding fails it) and
    # says so; linting it again here would only repeat that run.
    record = (synthesized.assembly_dir / GATED_RECORD).read_text()
    assert f"synthesized {synthesized.template_path} with cdk-nag and cfn-lint gates passed" in record


def test_an_unacknowledged_finding_fails_the_synth(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    s3.Bucket(cdk.Stack(app, "Bad"), "Bucket")
    add_gates(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()


def test_an_acknowledged_finding_passes(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    bucket = s3.Bucket(cdk.Stack(app, "Ok"), "Bucket", enforce_ssl=True)
    acknowledge(bucket, "AwsSolutions-S1", reason="test: no access logs")
    add_gates(app)
    app.synth()


def test_cfn_lint_findings_fail(tmp_path: Path) -> None:
    template = tmp_path / "t.json"
    template.write_text(
        json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"Nope": 1}}}})
    )
    with pytest.raises(GateError, match="E3002"):
        check_template(template, region="us-east-1")


def test_an_environment_specific_stack_passes_both_gates(tmp_path: Path, infra_settings: Settings) -> None:
    # Acknowledgments name ARNs with the account and region literal here, not as pseudo parameters.
    settings = infra_settings.model_copy(update={"account": "123456789012", "region": "eu-west-1"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CDK_VALIDATION", "false")
        template = synth(settings, tmp_path)
    assert "arn:aws:lambda:eu-west-1:336392948345:layer:AWSSDKPandas" in template.read_text()
