"""What a Lambda function knows about its deployment: its environment and the bundled settings."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from mlcycle.config import BUNDLED_CONFIG_FILE, Settings, load_settings, settings_from_json

PREFIX = "MLCYCLE_"


class FunctionEnvironment(BaseModel):
    """The environment variables the CDK sets on our functions (each function gets those it needs)."""

    model_config = ConfigDict(frozen=True)

    landing_bucket: str = ""
    curated_bucket: str = ""
    artifacts_bucket: str = ""
    monitoring_bucket: str = ""
    event_bus: str = "default"
    glue_database: str = ""
    sagemaker_role_arn: str = ""
    kms_key_arn: str = ""
    features_bucket: str = ""
    online_table: str = ""
    idempotency_table: str = ""
    lineage_table: str = ""
    large_upload_state_machine: str = ""


def environment() -> FunctionEnvironment:
    """Read per call, not cached: on the embedded AWS several functions share one process."""
    fields = FunctionEnvironment.model_fields
    values = {
        name: os.environ[PREFIX + name.upper()] for name in fields if PREFIX + name.upper() in os.environ
    }
    return FunctionEnvironment.model_validate(values)


@cache
def settings() -> Settings:
    """The settings bundled with the function's code at synth; the repository's own when run from source."""
    bundled = Path(__file__).resolve().parent.parent / BUNDLED_CONFIG_FILE
    if bundled.exists():
        return settings_from_json(bundled.read_text(encoding="utf-8"))
    return load_settings()
