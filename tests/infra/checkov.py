"""checkov, the security gate's scanner, run over a synthesized template (tests/infra/test_security.py).

checkov lives in a venv of its own (``make checkov``, which ``make test`` runs first): its pinned
dependencies would fight ours. It runs offline (``--skip-download``: no guidelines or policies fetched).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


def command(template: Path) -> list[str]:
    """The gate's checkov command line (the README quotes it)."""
    return [
        str(CHECKOV),
        *("--file", str(template)),
        *("--framework", "cloudformation"),
        *("--output", "json"),
        "--compact",
        "--skip-download",
    ]


def scan(template: Path) -> dict[str, Any]:
    """checkov's report on ``template``: ``summary`` and ``results`` (passed, failed, skipped checks)."""
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make checkov` (`make test` does)")
    done = subprocess.run(
        command(template), cwd=template.parent, capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode not in (0, 1):  # 1: some check failed, which the report lists
        pytest.fail(f"checkov exited {done.returncode}:\n{done.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report
