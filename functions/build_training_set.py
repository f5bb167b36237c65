"""Step Functions task: curated data (within ``retraining.training_window_days`` of the newest event
time when set; joined point in time with the feature store's views when they provide the problem's
features) -> train/test split in the artifacts bucket."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, runtime
from mlcycle.features import FeatureStore
from mlcycle.lineage import LineageStore
from mlcycle.pipeline_runs import PipelineRequest
from mlcycle.training_sets import build_training_set

logger = Logger()
tracer = Tracer()


class Environment(runtime.FunctionEnvironment):
    handler = "functions.build_training_set"
    curated_bucket: str
    artifacts_bucket: str
    lineage_table: str | None = None
    #: Both given when feature views provide the problem's features (point-in-time training sets).
    features_bucket: str | None = None
    glue_database: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PipelineRequest.model_validate(event)
    settings, env = runtime.settings(), runtime.environment(Environment)
    dataset = request.input.dataset
    if dataset not in (None, settings.problem.dataset.name):
        raise ValueError(
            f"dataset {dataset!r} is not the configured problem's {settings.problem.dataset.name!r}"
        )
    store = (
        FeatureStore.from_settings(
            settings,
            features_bucket=env.features_bucket,
            glue_database=env.glue_database,
            s3=aws.client("s3"),
        )
        if env.features_bucket and settings.feature_views
        else None
    )
    result = build_training_set(
        settings.problem,
        s3=aws.client("s3"),
        curated_bucket=env.curated_bucket,
        artifacts_bucket=env.artifacts_bucket,
        training_set_id=request.execution_name,
        lineage=LineageStore(env.lineage_table, client=aws.client("dynamodb")) if env.lineage_table else None,
        feature_store=store,
        feature_time_suffix=settings.model_tests.feature_time_suffix,
        glue_database=env.glue_database,
        window_days=settings.retraining.training_window_days,
    )
    logger.info("training set built", extra=result.__dict__)
    return result.__dict__ | {"poll_seconds": request.input.poll_seconds}
