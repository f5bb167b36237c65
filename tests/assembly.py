"""The session's one gated synth: the CDK app synthesized by ``mlcycle synth`` with every gate on (the CDK's
template validation, cdk-nag AwsSolutions, cfn-lint), shared by the infra assertions and the e2e platforms.

It runs in a subprocess because the tests' own jsii runtime has template validation off
(``CDK_VALIDATION=false``, set in tests/conftest.py before the CDK loads: bare-stack tests stay fast). The
xdist workers of one session share the result: the first that needs it synthesizes under a file lock in
the session's base temporary directory, the others wait for it and read the same cloud assembly.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.alert_settings import AlertChannels
from mlcycle.application.settings import example_settings
from mlcycle.commands.closed_loop import loop_settings
from mlcycle.config import Settings

REPO = Path(__file__).resolve().parents[1]
ALERT_EMAIL = "ops@example.com"

#: Written into the assembly once the synth and its gates passed: what ``mlcycle synth`` printed.
GATED_RECORD = "gated-synth.txt"
_FAILED = "gated-synth-failed.txt"  # next to the assembly: the synth's output, for every worker to fail with


def app_settings() -> Settings:
    """The example problem's defaults with one alert subscriber, and the demo's Slack and PagerDuty
    channels and training window (the closed loop's end-to-end test runs on this assembly too);
    independent of any mlcycle.toml."""
    example = example_settings().model_copy(update={"alerts": AlertChannels(emails=(ALERT_EMAIL,))})
    return loop_settings(example)


def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's base temporary directory: the same for every xdist worker of one run."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def gated_synth(root: Path, settings: Settings) -> Path:
    """``root/cdk.out``, synthesized once per session (gates on) with ``settings``; fails if a gate did."""
    out, failed = root / "cdk.out", root / _FAILED
    with (root / "cdk.out.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the first worker's synth has finished
        if not (out / GATED_RECORD).exists() and not failed.exists():
            _synth(root, out, settings)
    if failed.exists():
        pytest.fail(f"the gated synth failed:\n{failed.read_text()}", pytrace=False)
    return out


def _synth(root: Path, out: Path, settings: Settings) -> None:
    config = root / "gated-settings.json"
    config.write_text(settings.model_dump_json())
    env = {**os.environ, "PYTHONPATH": str(REPO), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    env.pop("CDK_VALIDATION", None)  # the gated synth validates the template: the CDK's default
    done = subprocess.run(
        [sys.executable, "-m", "mlcycle.cli", "--config", str(config), "synth", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        (root / _FAILED).write_text(done.stdout + done.stderr)
        return
    (out / GATED_RECORD).write_text(done.stdout)
