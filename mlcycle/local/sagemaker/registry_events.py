"""Model registry events in the embedded AWS.

Model registry: a package created with, or updated to, a new ``ModelApprovalStatus`` puts AWS's
``SageMaker Model Package State Change`` event on the default bus (moto emits none). Training jobs also emit
``SageMaker Training Job State Change`` on each primary status change, as AWS does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mlcycle.local.common.values import json_safe
from mlcycle.local.events import put_platform_event
from mlcycle.local.sagemaker.jobs import JobsState, jobs_state

log = logging.getLogger(__name__)


def put_sagemaker_event(
    state: JobsState, detail_type: str, detail: dict[str, Any], resources: list[str]
) -> None:
    """Put an ``aws.sagemaker`` event on the default bus, as SageMaker does (rules fire)."""
    put_platform_event(
        state.ctx, source="aws.sagemaker", detail_type=detail_type, detail=detail, resources=resources
    )


def _emit_model_package_state(backend: Any, package_arn: str) -> None:
    """The event AWS emits; a failure is logged, not raised: the package itself was stored."""
    try:
        detail = json_safe(backend.model_packages[package_arn].gen_response_object())
        put_sagemaker_event(jobs_state(), "SageMaker Model Package State Change", detail, [package_arn])
    except Exception:
        log.warning("could not emit the state change of %s", package_arn, exc_info=True)


def create_model_package_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_model_package(self: Any, **kwargs: Any) -> Any:
        if kwargs.get("model_package_group_name") and not kwargs.get("model_approval_status"):
            kwargs["model_approval_status"] = "PendingManualApproval"  # AWS's default for versioned packages
        arn = original(self, **kwargs)
        if kwargs.get("model_approval_status"):
            _emit_model_package_state(self, arn)
        return arn

    return create_model_package


#: Fields UpdateModelPackage may leave out; moto overwrites them with None, AWS leaves them alone.
_KEPT_ON_UPDATE = ("model_approval_status", "approval_description", "customer_metadata_properties")


def update_model_package_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_model_package(self: Any, **kwargs: Any) -> Any:
        requested = kwargs.get("model_package_arn")
        package = self.model_packages.get(self.model_package_name_mapping.get(requested, requested))
        before = package.model_approval_status if package is not None else None
        for name in _KEPT_ON_UPDATE if package is not None else ():
            if kwargs.get(name) is None:
                kwargs[name] = getattr(package, name)
        arn = original(self, **kwargs)
        if package is not None and package.model_approval_status != before:
            _emit_model_package_state(self, arn)
        return arn

    return update_model_package
