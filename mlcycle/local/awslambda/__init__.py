"""Lambda in the embedded AWS: our handlers run in this process instead of in Docker (invocations)."""

from __future__ import annotations

from mlcycle.local.awslambda.invocations import install, uninstall, wait_for_async

__all__ = ["install", "uninstall", "wait_for_async"]
