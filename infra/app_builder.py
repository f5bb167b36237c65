"""Build the CDK app with its gates, and synthesize it into a cloud assembly.

``synth`` is what the CLI (``mlcycle synth``) and the local provisioner call; ``app.py`` uses the parts.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk

from infra.gates import add_gates, check_template
from infra.stack import MlcycleStack
from mlcycle.config import Settings

#: Feature flags we rely on (the app sets them itself, so ``python app.py`` and ``cdk synth`` agree).
FEATURE_FLAGS = {
    # Grant S3 log delivery through the access-log bucket's policy, not the legacy LogDeliveryWrite ACL.
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


def new_app(*, outdir: str | Path | None = None) -> cdk.App:
    """An app with our feature flags; context from the CDK CLI (``-c config=...``) is merged in by the CDK."""
    return cdk.App(outdir=str(outdir) if outdir is not None else None, context=FEATURE_FLAGS)


def compose(app: cdk.App, settings: Settings) -> MlcycleStack:
    """Our one stack in ``app``, with the cdk-nag gate registered (it runs during ``app.synth()``)."""
    stack = MlcycleStack(app, settings=settings)
    add_gates(app)
    return stack


def build_app(settings: Settings, *, outdir: str | Path | None = None) -> tuple[cdk.App, MlcycleStack]:
    app = new_app(outdir=outdir)
    return app, compose(app, settings)


def template_path(assembly: cdk.cx_api.CloudAssembly, stack: MlcycleStack) -> Path:
    return Path(assembly.directory) / stack.template_file


def synth_and_check(app: cdk.App, stack: MlcycleStack) -> Path:
    """Synthesize (cdk-nag runs here) and lint the template; returns the template's path."""
    template = template_path(app.synth(), stack)
    check_template(template, region=stack.settings.region)
    return template


def synth(settings: Settings, outdir: str | Path) -> Path:
    """Synthesize into ``outdir`` (template, ``*.assets.json``, bundled assets) through both gates.

    Returns the template's path. Raises when cdk-nag finds an unacknowledged problem (during
    ``app.synth()``) or cfn-lint reports anything (:class:`infra.gates.GateError`).
    """
    return synth_and_check(*build_app(settings, outdir=outdir))
