"""Which settings a CLI command, the CDK app or a test runs with.

``--config FILE`` or ``./mlcycle.toml`` when present. A file that declares no ``[problem]`` (say, only
``project``, ``region`` and thresholds) is laid over the example churn problem's settings, and no file
at all means the example's settings as they are: a fresh clone runs ``make demo`` with no file to write.
"""

from __future__ import annotations

from pathlib import Path

from mlcycle.config import DEFAULT_CONFIG_FILE, Settings, load_settings, read_settings_file
from mlcycle.example import churn


def resolve_settings(path: str | Path | None = None) -> Settings:
    """The settings at ``path`` (default ``./mlcycle.toml``), over the example's when they name no problem."""
    chosen = Path(path) if path is not None else Path(DEFAULT_CONFIG_FILE)
    if path is None and not chosen.exists():
        return example_settings()
    if "problem" in read_settings_file(chosen):
        return load_settings(chosen)
    return load_settings(chosen, base=churn.settings_document())


def example_settings() -> Settings:
    """The example problem's settings with every other setting at its default (the tests' settings)."""
    return Settings.model_validate(churn.settings_document())
