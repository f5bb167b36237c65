"""S3 in the embedded AWS: bucket policies enforced as AWS would (policies), and event notifications
delivered (notifications)."""

from __future__ import annotations

from mlcycle.local.context import LocalContext
from mlcycle.local.s3 import notifications, policies

__all__ = ["install", "uninstall"]


def install(ctx: LocalContext) -> None:
    policies.install(ctx)
    notifications.install(ctx)


def uninstall() -> None:
    notifications.uninstall()
    policies.uninstall()
