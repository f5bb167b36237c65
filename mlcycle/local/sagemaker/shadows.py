"""Shadow variants in the embedded AWS (SageMaker's ``ShadowProductionVariants``; moto drops them).

An endpoint config may name one shadow variant beside its one production variant. The endpoint then runs
a model server for each: the production variant answers every request; a copy of a share of the requests
(the shadow's weight relative to the production variant's, at most all of them) goes to the shadow, off
the request's path, so its answer and its latency never reach the caller. Its answers are captured under
its own variant name (same ``eventId`` and ``inferenceId`` as the production record, for pairing) and its
metrics published under its own ``VariantName``, as SageMaker does.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import urllib3

from mlcycle.local import faults
from mlcycle.local.patching import MethodPatches
from mlcycle.local.sagemaker.servers import ModelServer

#: Copies in flight per process beyond which further copies are skipped (SageMaker samples too).
MAX_PENDING_COPIES = 64


@dataclass
class ShadowCopies:
    """The copies in flight to shadow variants (on the endpoints' state, stopped with it): a few
    threads, and a bound beyond which further copies are skipped."""

    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="shadow-copy")
    )
    slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_PENDING_COPIES)
    )

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def install(patches: MethodPatches) -> None:
    """Keep ``ShadowProductionVariants`` on endpoint configs (moto's handler drops the parameter)."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    original = SageMakerResponse.create_endpoint_config

    def create_endpoint_config(self: Any) -> Any:
        shadows = self._get_param("ShadowProductionVariants") or []
        production = self._get_param("ProductionVariants") or []
        if shadows and (len(shadows) > 1 or len(production) != 1):
            raise ValidationError(
                message="An endpoint config with a shadow variant has exactly one production variant "
                "and one shadow variant."
            )
        names = [v["VariantName"] for v in [*production, *shadows]]
        if len(set(names)) != len(names):
            raise ValidationError(message=f"Variant names must be unique: {names}")
        result = original(self)
        if shadows:
            config = self.sagemaker_backend.endpoint_configs[self._get_param("EndpointConfigName")]
            config.shadow_production_variants = shadows
        return result

    patches.replace(SageMakerResponse, "create_endpoint_config", create_endpoint_config)


def shadow_variants(config: Any) -> list[dict[str, Any]]:
    return list(getattr(config, "shadow_production_variants", None) or [])


def apply_shadows(endpoint: Any, config: Any) -> None:
    """DescribeEndpoint's ``ShadowProductionVariants`` for the config the endpoint now serves."""
    shadows = shadow_variants(config)
    endpoint.shadow_production_variants = endpoint._process_production_variants(shadows) if shadows else None


def copy_share(production: ModelServer, shadow: ModelServer) -> float:
    """The share of requests copied to ``shadow``: its weight relative to the production variant's."""
    if production.weight <= 0:
        return 0.0
    return min(1.0, max(shadow.weight, 0.0) / production.weight)


def mirror(
    copies: ShadowCopies,
    http: urllib3.PoolManager,
    shadow: ModelServer,
    *,
    share: float,
    headers: dict[str, str],
    body: bytes,
    on_answer: Any,
) -> None:
    """Send a copy of one request to ``shadow`` (with probability ``share``), off the caller's path;
    ``on_answer(status, body, content_type, model_seconds)`` gets what it answered."""
    if random.random() >= share or not copies.slots.acquire(blocking=False):
        return

    def send() -> None:
        started = time.perf_counter()
        try:
            answer = http.request(
                "POST", f"{shadow.url}/invocations", body=body, headers=headers, timeout=60.0, retries=False
            )
            content_type = answer.headers.get("Content-Type", "application/octet-stream")
            on_answer(answer.status, answer.data, content_type, time.perf_counter() - started)
        except urllib3.exceptions.HTTPError as error:
            on_answer(502, str(error).encode(), "text/plain", None)
        except Exception as error:  # a shadow must never disturb production; its failure is kept, not lost
            faults.record(f"shadow copy to variant {shadow.variant} failed", error)
        finally:
            copies.slots.release()

    copies.pool.submit(send)
