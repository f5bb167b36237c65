#!/usr/bin/env python3
"""The CDK app: settings from the ``config`` context key (default ``mlcycle.toml`` if present), one
stack, and the gates (cdk-nag during synth, cfn-lint after it). No environment reads, no AWS calls.
"""

from __future__ import annotations

from infra.app_builder import compose, new_app, synth_and_check
from mlcycle.application.settings import resolve_settings


def main() -> None:
    app = new_app()
    settings = resolve_settings(app.node.try_get_context("config"))
    synth_and_check(app, compose(app, settings))


if __name__ == "__main__":
    main()
