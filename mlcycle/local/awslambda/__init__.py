"""Lambda in the embedded AWS: each function runs its bundle in execution environments of this machine
(environments, invocations); asynchronous invocations queue and retry as in AWS (asynchronous)."""

from __future__ import annotations

from mlcycle.local.awslambda.invocations import install, resume, suspend, uninstall, wait_for_async

__all__ = ["install", "resume", "suspend", "uninstall", "wait_for_async"]
