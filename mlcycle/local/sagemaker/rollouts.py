"""Creating, updating and deleting endpoints in the embedded AWS (moto makes an endpoint InService at once
and has no UpdateEndpoint): a thread per create or update starts the new fleet of model servers, then
swaps it in, at once or by shifting traffic under a blue/green ``DeploymentConfig`` (traffic)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from mlcycle.local.common.values import utcnow
from mlcycle.local.sagemaker.endpoints import (
    EndpointsState,
    LiveEndpoint,
    announce,
    apply_config,
    capture_summary,
    deploy_fleet,
    endpoint_key,
    endpoints_state,
    fall_back,
    flush_capture,
)
from mlcycle.local.sagemaker.servers import DeployError
from mlcycle.local.sagemaker.traffic import shift_traffic

log = logging.getLogger(__name__)


def _rollout(
    state: EndpointsState,
    backend: Any,
    endpoint: Any,
    config: Any,
    *,
    generation: int,
    fallback: str,
    deployment: Mapping[str, Any] | None = None,
) -> None:
    """The create/update thread: start the new servers, then swap them in, or fall back to ``fallback``
    (``Failed`` for a create; an update returns to the status it started from, old servers still serving)."""
    key = endpoint_key(backend, endpoint.endpoint_name)
    try:
        new = deploy_fleet(state, backend, endpoint.endpoint_name, config)
    except Exception as error:
        reason = str(error) if isinstance(error, DeployError) else f"InternalServerError: {error}"
        if not isinstance(error, DeployError):
            log.exception("deploying endpoint %s failed", endpoint.endpoint_name)
        fall_back(state, endpoint, reason, key=key, generation=generation, fallback=fallback)
        return
    if deployment is not None:
        shift_traffic(
            state,
            backend,
            endpoint,
            config,
            green=new,
            deployment=deployment,
            generation=generation,
            fallback=fallback,
        )
        return
    old: LiveEndpoint | None = new
    with state.lock:
        swapped = state.generations.get(key) == generation and not state.stopping.is_set()
        if swapped:  # not deleted meanwhile
            old = state.live.get(key)
            state.live[key] = new
            apply_config(endpoint, config)
            endpoint.failure_reason = None
            endpoint.endpoint_status = "InService"
    if swapped:
        announce(state, endpoint)
    if old is not None:
        old.stop()


def start_rollout(
    state: EndpointsState,
    backend: Any,
    endpoint: Any,
    config: Any,
    *,
    fallback: str,
    deployment: Mapping[str, Any] | None = None,
) -> None:
    key = endpoint_key(backend, endpoint.endpoint_name)
    with state.lock:
        generation = state.generations[key] = state.generations.get(key, 0) + 1
        thread = threading.Thread(
            target=_rollout,
            args=(state, backend, endpoint, config),
            kwargs={"generation": generation, "fallback": fallback, "deployment": deployment},
            name=f"endpoint-{endpoint.endpoint_name}",
            daemon=True,
        )
        state.threads = [t for t in state.threads if t.is_alive()] + [thread]
    thread.start()


def create_endpoint_patch(original: Any) -> Any:
    def create_endpoint(self: Any, **kwargs: Any) -> Any:
        state = endpoints_state()
        from moto.sagemaker.exceptions import ValidationError

        if kwargs.get("endpoint_name") in self.endpoints:
            name = kwargs["endpoint_name"]
            arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:endpoint/{name.lower()}"
            raise ValidationError(message=f'Cannot create already existing endpoint "{arn}".')
        endpoint = original(self, **kwargs)
        config = self.endpoint_configs[endpoint.endpoint_config_name]
        endpoint.data_capture_config = capture_summary(config.data_capture_config)
        endpoint.endpoint_status = "Creating"
        start_rollout(state, self, endpoint, config, fallback="Failed")
        return endpoint

    return create_endpoint


def update_endpoint_patch(
    self: Any,
    endpoint_name: str,
    endpoint_config_name: str,
    deployment_config: Mapping[str, Any] | None = None,
    **_: Any,
) -> str:
    """UpdateEndpoint (moto has none): Updating now; the new servers replace the old ones when ready, at
    once or, with a blue/green ``DeploymentConfig``, by shifting traffic (mlcycle.local.sagemaker.traffic)."""
    from moto.sagemaker.exceptions import ValidationError

    state = endpoints_state()
    endpoint = self.endpoints.get(endpoint_name)
    arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:endpoint/{endpoint_name.lower()}"
    if endpoint is None:
        raise ValidationError(message=f"Could not find endpoint '{arn}'.")
    config = self.endpoint_configs.get(endpoint_config_name)
    if config is None:
        config_arn = (
            f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:endpoint-config/{endpoint_config_name}"
        )
        raise ValidationError(message=f"Could not find endpoint configuration '{config_arn}'.")
    previous = endpoint.endpoint_status
    if previous not in ("InService", "Failed"):
        raise ValidationError(message=f'Cannot update in-progress endpoint "{arn}".')
    endpoint.endpoint_status = "Updating"
    endpoint.last_modified_time = utcnow()
    blue_green = (deployment_config or {}).get("BlueGreenUpdatePolicy")
    start_rollout(
        state, self, endpoint, config, fallback=previous, deployment=deployment_config if blue_green else None
    )
    return str(endpoint.arn)


def update_endpoint_response_patch(self: Any) -> Any:
    from moto.core.responses import ActionResult

    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        deployment_config=self._get_param("DeploymentConfig"),
    )
    return ActionResult({"EndpointArn": arn})


def delete_endpoint_patch(original: Any) -> Any:
    def delete_endpoint(self: Any, endpoint_name: str) -> None:
        state = endpoints_state()
        original(self, endpoint_name)  # raises for an unknown endpoint
        key = endpoint_key(self, endpoint_name)
        with state.lock:
            live = state.live.pop(key, None)
            state.generations[key] = state.generations.get(key, 0) + 1  # orphan any rollout in flight
        flush_capture()
        if live is not None:
            live.stop()

    return delete_endpoint
