"""One typed configuration for a deployment.

The CDK app, the Lambdas (the resolved document is bundled with their code as ``mlcycle_config.json``),
the local runtime and the CLI all read the same :class:`Settings`. Loading never reads the
environment and never calls AWS, so it is safe at synth time.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlcycle.alert_settings import AlertChannels
from mlcycle.security import SecuritySettings

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
    #: Freshness: rows whose event time is older than this many days (at processing) break ``freshness``.
    max_age_days: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _keys_are_columns(self) -> DatasetContract:
        names = {c.name for c in self.columns}
        if self.max_age_days is not None and self.event_time is None:
            raise ValueError(f"dataset {self.name!r}: max_age_days needs an event_time column")
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


class InstanceTypes(_Model):
    training: str = "ml.m5.large"
    processing: str = "ml.m5.large"
    endpoint: str = "ml.t2.medium"
    endpoint_initial_count: int = 1


class DeploymentPolicy(_Model):
    """How a new model replaces the one an endpoint serves: SageMaker's deployment guardrails (a blue/green
    update whose traffic shifts all at once, as a canary, or linearly, rolled back when an alarm fires)."""

    strategy: Literal["all_at_once", "canary", "linear"] = "canary"
    #: ``canary``: the share of capacity that takes the new model first.
    canary_percent: Annotated[int, Field(ge=1, le=99)] = 10
    #: ``linear``: the share of capacity shifted at each step.
    linear_step_percent: Annotated[int, Field(ge=1, le=99)] = 25
    #: How long each partial shift bakes while the alarms watch (canary: before the rest shifts; linear:
    #: between steps; unused by all at once).
    wait_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    #: The final bake: after all traffic moved, the old fleet stays up this long while the alarms still
    #: watch (an alarm rolls back to it); then it is terminated.
    termination_wait_seconds: Annotated[int, Field(ge=0, le=3600)] = 120
    #: The whole deployment's limit (SageMaker: 600 to 28800 s, above the sum of the waits).
    max_execution_seconds: Annotated[int, Field(ge=600, le=28800)] = 3600

    @property
    def shifts(self) -> list[int]:
        """The new fleet's share of traffic (percent) after each shift, ending at 100."""
        if self.strategy == "canary":
            return [self.canary_percent, 100]
        if self.strategy == "linear":
            return [*range(self.linear_step_percent, 100, self.linear_step_percent), 100]
        return [100]

    @model_validator(mode="after")
    def _fits_in_its_limit(self) -> DeploymentPolicy:
        waits = self.wait_seconds * (len(self.shifts) - 1) + self.termination_wait_seconds
        if waits >= self.max_execution_seconds:
            raise ValueError(
                f"the deployment's waits add up to {waits} s, not below max_execution_seconds "
                f"({self.max_execution_seconds} s)"
            )
        return self


class ServerlessCapacity(_Model):
    """SageMaker Serverless Inference instead of instances: billed per request, scaled by SageMaker up to
    ``max_concurrency`` (no data capture there: SageMaker does not capture serverless endpoints)."""

    memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    max_concurrency: Annotated[int, Field(ge=1, le=200)] = 5


class ShadowSettings(_Model):
    """Shadow mode: a challenger awaiting review (PendingManualApproval) first serves as the endpoint's
    shadow variant. It gets a copy of ``traffic_percent`` % of live requests, its answers are captured and
    never returned, and ``mlcycle endpoints shadow`` compares it with the champion before anyone approves."""

    traffic_percent: Annotated[int, Field(ge=1, le=100)] = 100


class ServingSettings(_Model):
    """The endpoint: deployment policy, the SLO its rollback alarms watch, and capacity."""

    deployment: DeploymentPolicy = DeploymentPolicy()
    #: The latency SLO: p99 ModelLatency above this (over ``alarm_period_seconds``) sets the latency alarm.
    latency_p99_ms: Annotated[float, Field(gt=0)] = 500.0
    #: 5xx responses and model errors as a share of invocations above this set the error alarm.
    max_error_rate: Annotated[float, Field(gt=0, lt=1)] = 0.05
    #: CloudWatch alarm period: 10 or 30 (high resolution) or a multiple of 60 seconds.
    alarm_period_seconds: int = 60
    #: The alarms fire when this many of the last ``alarm_evaluation_periods`` periods breach.
    alarm_evaluation_periods: Annotated[int, Field(ge=1)] = 1
    alarm_datapoints: Annotated[int, Field(ge=1)] = 1
    #: Application Auto Scaling target tracking on invocations per instance (provisioned endpoints).
    min_instances: Annotated[int, Field(ge=1)] = 1
    max_instances: Annotated[int, Field(ge=1)] = 2
    target_invocations_per_instance: Annotated[int, Field(ge=1)] = 1000
    #: Serverless inference instead of instances (then the instance counts above are unused).
    serverless: ServerlessCapacity | None = None
    #: Shadow mode for challengers awaiting review (off when absent).
    shadow: ShadowSettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ServingSettings:
        if self.alarm_period_seconds not in (10, 30) and self.alarm_period_seconds % 60:
            raise ValueError("alarm_period_seconds must be 10, 30 or a multiple of 60 (CloudWatch's rule)")
        if self.alarm_datapoints > self.alarm_evaluation_periods:
            raise ValueError("alarm_datapoints cannot exceed alarm_evaluation_periods")
        if self.min_instances > self.max_instances:
            raise ValueError("min_instances cannot exceed max_instances")
        if self.shadow is not None and self.serverless is not None:
            raise ValueError("shadow variants need instances: SageMaker has none for serverless endpoints")
        return self


class LambdaSettings(_Model):
    """How the Lambda functions run in AWS."""

    python: Literal["3.12", "3.13", "3.14"] = "3.13"
    memory_mb: int = 1024
    timeout_seconds: int = 300
    #: Version of AWS's managed "AWS SDK for pandas" layer in the target region (see the README).
    pandas_layer_version: int = 11
    #: Uploads larger than this go to the large-upload state machine (Distributed Map over chunks).
    large_upload_bytes: Annotated[int, Field(gt=0)] = 512 * 1024 * 1024
    #: Rows per chunk of a large upload (one Distributed Map item each).
    large_upload_chunk_rows: Annotated[int, Field(gt=0)] = 1_000_000


RetrainingTrigger = Literal[
    "DriftDetected", "ModelQualityDegraded", "KpiBreached", "DataQualityViolated", "BiasDetected"
]


class RetrainingSettings(_Model):
    """What may start the training pipeline by itself, and the guards of the retraining controller that
    every trigger goes through (mlcycle.retraining)."""

    #: Start a run when validated data arrives. Off by default: every upload would bill a training job.
    on_new_data: bool = False
    #: An EventBridge schedule expression, e.g. "rate(7 days)"; None leaves the schedule rule disabled.
    schedule: str | None = None
    #: The monitor findings that ask for a retraining (once enough new labelled rows arrived).
    on_findings: tuple[RetrainingTrigger, ...] = ("DriftDetected", "ModelQualityDegraded", "KpiBreached")
    #: A finding starts a run only once this many labelled rows arrived since the last run started
    #: (validated uploads); until then it waits, and the upload that completes them starts the run.
    min_new_labelled_rows: Annotated[int, Field(ge=0)] = 500
    #: No run starts within this long after the last one started (a flapping trigger waits it out).
    cooldown_minutes: Annotated[int, Field(ge=0)] = 360
    #: At most this many runs start per UTC day, whatever triggers them.
    max_runs_per_day: Annotated[int, Field(ge=1)] = 3
    #: Single flight: a run holds the lock until it ends, or at most this long (a run that never reports).
    lock_minutes: Annotated[int, Field(ge=1)] = 240
    #: Train on the rows whose event time lies within this many days of the newest (None: all rows).
    training_window_days: Annotated[float, Field(gt=0)] | None = None
    #: The challenger is also judged, against the champion, on the labelled rows of this many recent
    #: monitor windows that saw traffic (0: on its test split only).
    recent_windows: Annotated[int, Field(ge=0, le=100)] = 6


class MetricThreshold(_Model):
    """A condition on one evaluation metric, like MLflow's ``MetricThreshold``.

    ``threshold`` bounds the value itself; ``min_absolute_change`` / ``min_relative_change`` bound the
    change against the champion (a negative value tolerates a regression up to that much). ``metric``
    ``"primary"`` stands for ``problem.primary_metric``; ``greater_is_better`` ``None`` infers it.
    """

    metric: str = "primary"
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool | None = None


class InvarianceCheck(_Model):
    """Changing ``feature`` (to each of ``values``, or by ``delta``) must leave predictions alone: at most
    ``max_violation_fraction`` of the rows may move by more than ``epsilon`` (probability or value)."""

    feature: str
    values: tuple[str, ...] = ()
    delta: float | None = None
    epsilon: Annotated[float, Field(ge=0)] = 0.1
    max_violation_fraction: Annotated[float, Field(ge=0, le=1)] = 0.05


class DirectionalCheck(_Model):
    """Adding ``delta`` to ``feature`` must move predictions in ``direction`` on average, and against it
    (by more than ``tolerance``) for at most ``max_violation_fraction`` of the rows."""

    feature: str
    delta: float
    direction: Literal["increase", "decrease"] = "increase"
    tolerance: Annotated[float, Field(ge=0)] = 0.01
    max_violation_fraction: Annotated[float, Field(ge=0, le=1)] = 0.1


class ModelTestsSettings(_Model):
    """Pre-training data tests and post-training model tests (mlcycle.quality); failures stop the run."""

    min_rows: Annotated[int, Field(ge=1)] = 200
    #: Classification: the rarest class must make up at least this fraction of the training rows.
    min_minority_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.05
    #: Columns named ``{view}{suffix}`` carry feature timestamps; none may be later than the row's event.
    feature_time_suffix: str = "__event_time"
    metric_thresholds: tuple[MetricThreshold, ...] = (MetricThreshold(min_absolute_change=-0.02),)
    invariance: tuple[InvarianceCheck, ...] = ()
    directional: tuple[DirectionalCheck, ...] = ()
    max_calibration_error: Annotated[float, Field(ge=0)] | None = 0.1
    max_brier_score: Annotated[float, Field(ge=0)] | None = 0.25
    sensitive_attribute: str | None = None
    max_positive_rate_difference: Annotated[float, Field(ge=0)] = 0.1
    max_recall_difference: Annotated[float, Field(ge=0)] = 0.15
    #: Segments smaller than this are left out of the per-segment comparison (too noisy to judge).
    min_segment_rows: Annotated[int, Field(ge=1)] = 30


class FeatureSpec(_Model):
    """One feature of a view: a column of the view's source dataset, with its type."""

    name: str
    type: ColumnType


class FeatureViewSpec(_Model):
    """A feature view: features of one source dataset, keyed by entity, valid for ``ttl_seconds``."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    entity_keys: Annotated[tuple[str, ...], Field(min_length=1)]
    event_timestamp: str
    #: When a row became known; rows created after an entity row's event time are invisible to it.
    created_timestamp: str | None = None
    features: Annotated[tuple[FeatureSpec, ...], Field(min_length=1)]
    #: How long a value stays valid after its event time; ``None`` keeps it valid forever.
    ttl_seconds: Annotated[int, Field(gt=0)] | None = None
    #: The dataset whose curated data feeds the view.
    source: str
    #: Keep the latest value per entity in the online store (DynamoDB).
    online: bool = True
    #: Rewrite the view's key-sorted snapshot after every ingestion, so point-in-time joins in this
    #: process skip reading and sorting the partitions (mlcycle.features.snapshots). Each rewrite reads
    #: every row of the view: turn it off for views too large for the ingest function's memory (joins
    #: then read the partitions; Athena reads them either way).
    compact: bool = True

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def check_against(self, contract: DatasetContract) -> None:
        """Raise ``ValueError`` unless every column the view reads exists in ``contract`` with its type."""
        columns = {c.name: c.type for c in contract.columns}
        wanted = {f.name: f.type for f in self.features}
        for name in (*self.entity_keys, self.event_timestamp, self.created_timestamp):
            if name is not None and name not in columns:
                raise ValueError(f"feature view {self.name!r}: {name!r} is not a column of {contract.name!r}")
        for name in (self.event_timestamp, self.created_timestamp):
            if name is not None and columns[name] != "timestamp":
                raise ValueError(f"feature view {self.name!r}: {name!r} must be a timestamp column")
        for name, kind in wanted.items():
            if columns.get(name) != kind:
                raise ValueError(
                    f"feature view {self.name!r}: feature {name!r} ({kind}) does not match dataset "
                    f"{contract.name!r} (column type {columns.get(name)})"
                )


class Debounce(_Model):
    """An event fires when ``windows_breached`` of the last ``windows`` windows breach, and its
    ``...Recovered`` when fewer do again: one bad window is not an incident, one good one not a recovery."""

    windows_breached: Annotated[int, Field(ge=1)] = 2
    windows: Annotated[int, Field(ge=1)] = 3

    @model_validator(mode="after")
    def _fits(self) -> Debounce:
        if self.windows_breached > self.windows:
            raise ValueError("windows_breached cannot exceed windows")
        return self


class KpiSpec(_Model):
    """A business KPI: ``aggregate`` of ``column`` over the captured rows that match ``where`` (a pandas
    query over the features, ``prediction`` and, once labels arrived, ``label``), per model version; it
    breaches outside [``min``, ``max``]. Example: the churn rate among customers the model flagged."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")]
    aggregate: Literal["mean", "sum", "count", "rate"] = "mean"
    column: str = "label"
    where: str | None = None
    min: float | None = None
    max: float | None = None


class MonitoringSettings(_Model):
    """The monitors that watch the endpoint: when they run, how much traffic a verdict needs, and when a
    finding becomes an event (and an alert)."""

    #: How often the monitors run (an EventBridge schedule per endpoint); each run reads the capture
    #: that arrived since the last one (its window).
    schedule_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    #: A window with fewer captured rows answers ``insufficient_data``, not a verdict.
    min_rows: Annotated[int, Field(ge=1)] = 200
    #: Dataset drift: the share of drifted features (importance-weighted when the model has importances)
    #: above which the dataset has drifted.
    drift_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    #: Data quality: a feature's missing rate may exceed the baseline's by this much.
    missing_rate_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.1
    #: Model quality: the primary metric may fall this far below the registered test value.
    quality_tolerance: Annotated[float, Field(ge=0)] = 0.05
    #: Labelled rows a window needs before its model quality is judged.
    min_labelled_rows: Annotated[int, Field(ge=1)] = 50
    #: Bias: a segment's positive rate or recall may move this far from the baseline's.
    bias_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.1
    kpis: tuple[KpiSpec, ...] = ()
    debounce: Debounce = Debounce()
    #: System SLOs, alarmed by multi-window burn rates on the endpoint's metrics.
    availability_slo: Annotated[float, Field(gt=0, lt=1)] = 0.999
    latency_slo_ms: Annotated[float, Field(gt=0)] = 500.0


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
    serving: ServingSettings = ServingSettings()
    functions: LambdaSettings = LambdaSettings()
    retraining: RetrainingSettings = RetrainingSettings()
    model_tests: ModelTestsSettings = ModelTestsSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    security: SecuritySettings = SecuritySettings()
    #: SageMaker scikit-learn framework container version (training and serving).
    sklearn_version: str = "1.9-0"
    #: Fraction of endpoint requests captured for monitoring (0-100).
    capture_percentage: Annotated[int, Field(ge=0, le=100)] = 100
    log_retention_days: int = 30
    #: Feature views of the feature store (mlcycle.features); after ``problem``, whose dataset they may read.
    feature_views: tuple[FeatureViewSpec, ...] = ()

    @model_validator(mode="after")
    def _feature_views_read_known_datasets(self) -> Settings:
        contracts = {self.problem.dataset.name: self.problem.dataset}
        names = [view.name for view in self.feature_views]
        if len(set(names)) != len(names):
            raise ValueError(f"feature view names must be unique: {names}")
        for view in self.feature_views:
            if view.source not in contracts:
                raise ValueError(
                    f"feature view {view.name!r}: no dataset {view.source!r} (known: {sorted(contracts)})"
                )
            view.check_against(contracts[view.source])
        return self

    def feature_view(self, name: str) -> FeatureViewSpec:
        for view in self.feature_views:
            if view.name == name:
                return view
        raise KeyError(f"no feature view {name!r} (known: {[v.name for v in self.feature_views]})")

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


class SettingsNotFoundError(FileNotFoundError):
    """No settings file was named and none lies in the working directory."""


def read_settings_file(path: str | Path) -> dict[str, object]:
    """The raw document of a TOML (or, by suffix, JSON) settings file, unvalidated."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    document: dict[str, object] = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    return document


def load_settings(path: str | Path | None = None, *, base: Mapping[str, object] | None = None) -> Settings:
    """A deployment's settings: the file at ``path`` (default ``./mlcycle.toml``) laid over ``base``.

    There is no built-in problem: a file that declares none needs a ``base`` that does (the CLI and the
    CDK app lay a file without a ``[problem]`` over the example's settings, mlcycle.application.settings).
    """
    if path is None:
        if not Path(DEFAULT_CONFIG_FILE).exists():
            if base is None:
                raise SettingsNotFoundError(f"no settings file given and no ./{DEFAULT_CONFIG_FILE}")
            return Settings.model_validate(base)
        path = DEFAULT_CONFIG_FILE
    return Settings.model_validate(merge_settings(base or {}, read_settings_file(path)))


def settings_from_json(text: str) -> Settings:
    return Settings.model_validate_json(text)


def merge_settings(base: Mapping[str, object], over: Mapping[str, object]) -> dict[str, object]:
    """``over`` laid over ``base``: tables merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in over.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = merge_settings(current, value)
        else:
            out[key] = value
    return out
