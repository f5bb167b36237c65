"""Blue/green updates in the embedded AWS: SageMaker's deployment guardrails, carried out.

An ``UpdateEndpoint`` with a ``DeploymentConfig.BlueGreenUpdatePolicy``: the new fleet (green) starts
beside the serving one (blue); traffic shifts to it as the routing configuration says (``ALL_AT_ONCE``,
``CANARY`` with ``CanarySize``, ``LINEAR`` with ``LinearStepSize``; capacity percent or instance count
of the green fleet), each partial shift baking ``WaitIntervalInSeconds`` and the full shift
``TerminationWaitInSeconds`` before blue is let go, all within ``MaximumExecutionTimeoutInSeconds``.

While it bakes, the ``AutoRollbackConfiguration`` alarms are watched (the embedded AWS evaluates them
from the metrics the endpoint publishes, mlcycle.local.cloudwatch): one in ALARM rolls the deployment
back. Blue takes all traffic again, green stops, the endpoint is InService on its previous config, and
``FailureReason`` names the alarm; the same happens when green cannot start or the time runs out. A
rollback happens because an alarm fired, never because the emulator was told the model is bad.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlcycle.local.sagemaker.endpoints import (
    EndpointsState,
    LiveEndpoint,
    announce,
    apply_config,
    endpoint_key,
    fall_back,
)

log = logging.getLogger(__name__)

#: Seconds between two looks at the rollback alarms while a stage bakes.
WATCH_SECONDS = 0.2


@dataclass(frozen=True)
class BlueGreenPolicy:
    """The parts of a ``DeploymentConfig`` a blue/green update follows."""

    shifts: tuple[float, ...]  # green's share of traffic after each shift, ending at 1.0
    wait_seconds: float
    termination_wait_seconds: float
    max_seconds: float
    alarms: tuple[str, ...]

    @classmethod
    def of(cls, config: Mapping[str, Any], instances: int) -> BlueGreenPolicy:
        policy = config["BlueGreenUpdatePolicy"]
        routing = policy["TrafficRoutingConfiguration"]
        kind = routing["Type"]
        if kind == "CANARY":
            shifts: tuple[float, ...] = (_share(routing["CanarySize"], instances), 1.0)
        elif kind == "LINEAR":
            step = _share(routing["LinearStepSize"], instances)
            count = max(1, int(-(-1.0 // step)))
            shifts = tuple(min(1.0, step * (i + 1)) for i in range(count))
        else:
            shifts = (1.0,)
        alarms = tuple(
            a["AlarmName"] for a in (config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])
        )
        return cls(
            shifts=shifts,
            wait_seconds=float(routing.get("WaitIntervalInSeconds", 0)),
            termination_wait_seconds=float(policy.get("TerminationWaitInSeconds", 0)),
            max_seconds=float(policy.get("MaximumExecutionTimeoutInSeconds", 28800)),
            alarms=alarms,
        )


def _share(size: Mapping[str, Any], instances: int) -> float:
    value = float(size["Value"])
    share = value / 100 if size["Type"] == "CAPACITY_PERCENT" else value / max(instances, 1)
    return min(1.0, max(share, 0.0))


class RolledBack(Exception):
    """The deployment stopped; the reason becomes the endpoint's FailureReason."""


def shift_traffic(
    state: EndpointsState,
    backend: Any,
    endpoint: Any,
    config: Any,
    *,
    green: LiveEndpoint,
    deployment: Mapping[str, Any],
    generation: int,
    fallback: str,
) -> None:
    """Run one blue/green update to its end: green serving alone, or blue again after a rollback."""
    key = endpoint_key(backend, endpoint.endpoint_name)
    instances = sum(int(v.get("InitialInstanceCount", 1)) for v in config.production_variants)
    policy = BlueGreenPolicy.of(deployment, instances)
    with state.lock:
        blue = state.live.get(key)
        if blue is None or state.generations.get(key) != generation:
            green.stop()
            return
        blue.green, blue.green_share = green, 0.0
    clock = _VirtualClock(state)
    try:
        for number, share in enumerate(policy.shifts, 1):
            blue.green_share = share
            log.info(
                "%s: %.0f%% of traffic on the new fleet (shift %d)",
                endpoint.endpoint_name,
                share * 100,
                number,
            )
            bake = policy.termination_wait_seconds if share >= 1.0 else policy.wait_seconds
            _bake(state, backend, policy, bake, clock)
    except RolledBack as reason:
        _roll_back(
            state,
            key=key,
            endpoint=endpoint,
            blue=blue,
            reason=str(reason),
            generation=generation,
            fallback=fallback,
        )
        return
    with state.lock:
        if state.generations.get(key) != generation or state.stopping.is_set():
            return  # deleted or superseded meanwhile: the delete stops every server
        blue.green = None
        state.live[key] = green
        apply_config(endpoint, config)
        endpoint.failure_reason = None
        endpoint.endpoint_status = "InService"
    announce(state, endpoint)
    blue.stop()


class _VirtualClock:
    """Seconds on the embedded AWS's clock since the deployment started: the wall clock sped up by
    ``ctx.time_scale`` (which may change meanwhile), as the schedules and alarms see time. A bake of 300 s
    with the clock sped up 600 times takes half a second, as the monitors' hourly windows take 6 s."""

    def __init__(self, state: EndpointsState) -> None:
        self._state, self._last, self.elapsed = state, time.monotonic(), 0.0

    def now(self) -> float:
        real = time.monotonic()
        self.elapsed += (real - self._last) * self._state.ctx.time_scale
        self._last = real
        return self.elapsed


def _bake(
    state: EndpointsState, backend: Any, policy: BlueGreenPolicy, seconds: float, clock: _VirtualClock
) -> None:
    """Watch the rollback alarms for ``seconds`` (on the embedded AWS's clock); raise RolledBack when one
    is in ALARM."""
    deadline = clock.now() + seconds
    while True:
        fired = _alarm_in_alarm(backend, policy.alarms)
        if fired:
            raise RolledBack(f"Rolled back: alarm {fired} went into ALARM during the deployment")
        now = clock.now()
        if now > policy.max_seconds:
            raise RolledBack("Rolled back: the deployment ran past MaximumExecutionTimeoutInSeconds")
        if state.stopping.is_set() or now >= deadline:
            return
        time.sleep(WATCH_SECONDS)


def _alarm_in_alarm(backend: Any, names: tuple[str, ...]) -> str | None:
    from moto.cloudwatch.models import cloudwatch_backends

    alarms = cloudwatch_backends[backend.account_id][backend.region_name].alarms
    for name in names:
        alarm = alarms.get(name)
        if alarm is not None and alarm.state_value == "ALARM":
            return name
    return None


def _roll_back(
    state: EndpointsState,
    *,
    key: tuple[str, str, str],
    endpoint: Any,
    blue: LiveEndpoint,
    reason: str,
    generation: int,
    fallback: str,
) -> None:
    log.warning("%s: %s", endpoint.endpoint_name, reason)
    green = blue.green
    fall_back(state, endpoint, reason, key=key, generation=generation, fallback=fallback, blue=blue)
    if green is not None:
        green.stop()
