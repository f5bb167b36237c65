"""Model registry events in the embedded AWS.

Model registry: a package created with, or updated to, a new ``ModelApprovalStatus`` puts AWS's
``SageMaker Model Package State Change`` event on the default bus (moto emits none). Training jobs also emit
``SageMaker Training Job State Change`` on each primary status change, as AWS does.
"""

from __future__ import annotations

import copy
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


class StateChangeNotEmitted(RuntimeError):
    """The approval event could not be put. The patches undo the change and fail the call, so the caller
    sees it and a retry makes the change (and emits) again: stored without its event, a version approved
    would never deploy."""


def _failed_call(error: StateChangeNotEmitted) -> Exception:
    """What the API caller gets (a moto service error, so boto3 raises a ClientError with the reason)."""
    from moto.sagemaker.exceptions import SagemakerClientError

    return SagemakerClientError("InternalFailure", str(error))


def _emit_model_package_state(backend: Any, package_arn: str) -> None:
    """The event AWS emits on a new approval status; raises :class:`StateChangeNotEmitted`."""
    try:
        detail = json_safe(backend.model_packages[package_arn].gen_response_object())
        put_sagemaker_event(jobs_state(), "SageMaker Model Package State Change", detail, [package_arn])
    except Exception as error:
        log.exception("could not emit the state change of %s", package_arn)
        raise StateChangeNotEmitted(
            f"the approval change of {package_arn} was not stored: its SageMaker Model Package State "
            f"Change event could not be put ({type(error).__name__}: {error}); call again"
        ) from error


def _same_request(backend: Any, group: str | None, token: str | None) -> str | None:
    """The package an earlier call with this ClientToken created in ``group`` (AWS answers it again)."""
    if not group or not token:
        return None
    for package in backend.model_packages.values():
        if package.model_package_group_name == group and package.client_token == token:
            return str(package.arn)
    return None


def create_model_package_patch(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_model_package(self: Any, **kwargs: Any) -> Any:
        group = kwargs.get("model_package_group_name")
        repeated = _same_request(self, group, kwargs.get("client_token"))
        if repeated is not None:
            return repeated  # a retried registration: no second version, no second event
        if group and not kwargs.get("model_approval_status"):
            kwargs["model_approval_status"] = "PendingManualApproval"  # AWS's default for versioned packages
        name = kwargs.get("model_package_name") or group
        mapped_before = self.model_package_name_mapping.get(name)
        arn = original(self, **kwargs)
        if kwargs.get("model_approval_status"):
            try:
                _emit_model_package_state(self, arn)
            except StateChangeNotEmitted as error:
                # Undone, so the retry registers (and announces) the same version again.
                del self.model_packages[arn]
                self.model_package_name_mapping.pop(arn, None)
                if mapped_before is None:
                    self.model_package_name_mapping.pop(name, None)
                else:
                    self.model_package_name_mapping[name] = mapped_before
                raise _failed_call(error) from error
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
        saved = copy.deepcopy(vars(package)) if package is not None else None
        arn = original(self, **kwargs)
        if package is not None and package.model_approval_status != before:
            try:
                _emit_model_package_state(self, arn)
            except StateChangeNotEmitted as error:
                vars(package).update(saved or {})  # undone: a retry changes the status and emits again
                raise _failed_call(error) from error
        return arn

    return update_model_package
