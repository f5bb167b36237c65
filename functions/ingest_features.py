"""EventBridge (DatasetValidated on our bus) -> that upload's curated rows into the feature store."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, runtime
from mlcycle.features import FeatureStore, ingest_curated

logger = Logger()
tracer = Tracer()


class Environment(runtime.FunctionEnvironment):
    handler = "functions.ingest_features"
    features_bucket: str
    online_table: str | None = None
    glue_database: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    env = runtime.environment(Environment)
    store = FeatureStore.from_settings(
        runtime.settings(),
        features_bucket=env.features_bucket,
        online_table=env.online_table,
        glue_database=env.glue_database,
    )
    detail = event.detail
    result = ingest_curated(store, detail["dataset"], detail["curated_uri"], s3=aws.client("s3")).as_dict()
    logger.info("ingested features", extra=result)
    return result
