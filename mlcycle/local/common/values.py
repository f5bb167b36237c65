"""moto's conventions for the values we write into its objects: its clock and SageMaker's event times."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """moto's clock (naive UTC), so our timestamps sort with the ones moto writes."""
    from moto.core.utils import utcnow as moto_utcnow

    return moto_utcnow()


def json_safe(value: Any) -> Any:
    """Datetimes -> epoch milliseconds (how SageMaker events carry times), recursively."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
