"""One typed configuration for a deployment.

The CDK app, the Lambdas (the resolved document is bundled with their code as ``mlcycle_config.json``),
the local runtime and the CLI all read the same :class:`Settings`. Loading never reads the
environment and never calls AWS, so it is safe at synth time.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The file the CLI and the CDK app read when no other is named.
DEFAULT_CONFIG_FILE = "mlcycle.toml"
#: The name of the resolved config document bundled next to Lambda code.
BUNDLED_CONFIG_FILE = "mlcycle_config.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ColumnType = Literal["string", "int", "float", "bool", "timestamp"]


class ColumnSpec(_Model):
    """One column of a dataset contract."""

    name: str
    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None


class DatasetContract(_Model):
    """What an upload of one dataset must look like."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    columns: tuple[ColumnSpec, ...]
    key: str | None = None
    event_time: str | None = None

    @model_validator(mode="after")
    def _keys_are_columns(self) -> DatasetContract:
        names = {c.name for c in self.columns}
        for field in (self.key, self.event_time):
            if field is not None and field not in names:
                raise ValueError(f"{field!r} is not a column of dataset {self.name!r}")
        return self

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


ModelFamily = Literal["hist_gradient_boosting", "random_forest", "logistic_regression"]


class ModelSpec(_Model):
    """Which estimator to train and with what hyperparameters."""

    family: ModelFamily = "hist_gradient_boosting"
    hyperparameters: dict[str, int | float | str] = Field(default_factory=dict)


class ProblemConfig(_Model):
    """The ML problem: which dataset, target and features, and how to judge a model."""

    task: Literal["classification", "regression"] = "classification"
    dataset: DatasetContract
    target: str
    features: tuple[str, ...]
    model: ModelSpec = ModelSpec()
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    #: The metric the quality gate and champion comparison use.
    primary_metric: Literal["accuracy", "roc_auc", "f1", "r2", "rmse"] = "roc_auc"
    seed: int = 42

    @model_validator(mode="after")
    def _columns_exist(self) -> ProblemConfig:
        names = {c.name for c in self.dataset.columns}
        missing = [c for c in (self.target, *self.features) if c not in names]
        if missing:
            raise ValueError(f"target/features not in dataset {self.dataset.name!r}: {missing}")
        return self


class Thresholds(_Model):
    """Quality gate and approval policy."""

    min_primary_metric: float = 0.70
    #: A challenger is auto-approved when it beats the champion by at least this much.
    auto_approve_margin: float = 0.0
    auto_approve: bool = True


class AlertChannels(_Model):
    emails: tuple[str, ...] = ()
    slack_webhook_secret: str | None = None
    pagerduty_routing_key_secret: str | None = None


class InstanceTypes(_Model):
    training: str = "ml.m5.large"
    processing: str = "ml.m5.large"
    endpoint: str = "ml.t2.medium"
    endpoint_initial_count: int = 1


class LambdaSettings(_Model):
    """How the Lambda functions run in AWS."""

    python: Literal["3.12", "3.13", "3.14"] = "3.13"
    memory_mb: int = 1024
    timeout_seconds: int = 300
    #: Version of AWS's managed "AWS SDK for pandas" layer in the target region (see the README).
    pandas_layer_version: int = 11


class RetrainingSettings(_Model):
    """What may start the training pipeline by itself (the guards come with the retraining controller)."""

    #: Start a run when validated data arrives. Off by default: every upload would bill a training job.
    on_new_data: bool = False
    #: An EventBridge schedule expression, e.g. "rate(7 days)"; None leaves the schedule rule disabled.
    schedule: str | None = None


class Settings(_Model):
    """A whole deployment of mlcycle."""

    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,20}$")] = "mlcycle"
    stage: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,9}$")] = "dev"
    #: Account and region to deploy to; ``None`` synthesizes an environment-agnostic stack.
    account: str | None = None
    region: str = "us-east-1"
    problem: ProblemConfig
    thresholds: Thresholds = Thresholds()
    alerts: AlertChannels = AlertChannels()
    instances: InstanceTypes = InstanceTypes()
    functions: LambdaSettings = LambdaSettings()
    retraining: RetrainingSettings = RetrainingSettings()
    #: SageMaker scikit-learn framework container version (training and serving).
    sklearn_version: str = "1.9-0"
    #: Fraction of endpoint requests captured for monitoring (0-100).
    capture_percentage: Annotated[int, Field(ge=0, le=100)] = 100
    log_retention_days: int = 30

    @property
    def prefix(self) -> str:
        """Stable prefix for the few physical names we must choose (endpoint, model group)."""
        return f"{self.project}-{self.stage}"

    @property
    def endpoint_name(self) -> str:
        return f"{self.prefix}-endpoint"

    @property
    def model_package_group(self) -> str:
        return f"{self.prefix}-models"

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def load_settings(path: str | Path | None = None) -> Settings:
    """Read a deployment's settings: the example problem's defaults, overridden by a TOML or JSON file."""
    from mlcycle.example.churn import default_problem

    base = Settings(problem=default_problem()).model_dump(mode="json")
    if path is None:
        candidate = Path(DEFAULT_CONFIG_FILE)
        path = candidate if candidate.exists() else None
    if path is not None:
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        overrides = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
        base = _deep_merge(base, overrides)
    return Settings.model_validate(base)


def settings_from_json(text: str) -> Settings:
    return Settings.model_validate_json(text)


def _deep_merge(base: dict[str, object], over: dict[str, object]) -> dict[str, object]:
    out = dict(base)
    for key, value in over.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = _deep_merge(current, value)
        else:
            out[key] = value
    return out
