"""Bucket policies on the embedded AWS: evaluate ``aws:SecureTransport`` instead of ignoring conditions.

moto ignores a policy statement's Condition, so the TLS-only statement every bucket carries
(Deny s3:* when aws:SecureTransport is false) denies every request. The embedded AWS serves plain HTTP on
127.0.0.1 only, traffic that never leaves the machine, so it treats that condition as satisfied: such
statements are dropped before moto evaluates the rest. TLS enforcement itself is checked by cdk-nag and
the CDK assertion tests, not by traffic.
"""

from __future__ import annotations

import json
from typing import Any

from moto.s3.models import FakeBucket

from mlcycle.local import context
from mlcycle.local.context import LocalContext
from mlcycle.local.patching import MethodPatches


class PoliciesState(MethodPatches):
    """moto's replaced method, on the running embedded AWS."""


def _denies_plain_http_only(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition", {})
    return statement.get("Effect") == "Deny" and condition == {"Bool": {"aws:SecureTransport": "false"}}


def _get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    from moto.iam.access_control import IAMPolicy, PermissionResult

    if self.policy is None:
        return PermissionResult.NEUTRAL
    document = json.loads(self.policy)
    statements = document.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    kept = [s for s in statements if not _denies_plain_http_only(s)]
    if not kept:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)


def install(ctx: LocalContext) -> None:
    patches = ctx.services.setdefault(PoliciesState, PoliciesState())
    if not patches.active:
        patches.replace(FakeBucket, "get_permission", _get_permission)


def uninstall() -> None:
    ctx = context.running()
    patches = ctx.services.pop(PoliciesState, None) if ctx is not None else None
    if patches is not None:
        patches.restore()
