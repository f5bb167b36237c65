"""EventBridge (DatasetValidated on our bus) -> that upload's curated rows into the feature store, then
``FeaturesIngested`` on the bus (the retraining controller counts new rows on it: a training set built
before the features are in would find none for those rows)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, events, runtime
from mlcycle.aws import split_s3_uri
from mlcycle.data.manifests import read_manifest
from mlcycle.features import FeatureStore, ingest_curated
from mlcycle.names import EventType

logger = Logger()
tracer = Tracer()


class Environment(runtime.FunctionEnvironment):
    handler = "functions.ingest_features"
    features_bucket: str
    online_table: str | None = None
    glue_database: str | None = None
    event_bus: str | None = None


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
    s3 = aws.client("s3")
    results = [
        ingest_curated(store, detail["dataset"], uri, s3=s3).as_dict() for uri in curated_objects(s3, detail)
    ]
    result = {"dataset": detail["dataset"], "ingested": results}
    logger.info("ingested features", extra=result)
    if env.event_bus:
        # What the upload said (its rows and id), now with its features in the store.
        announced = {k: detail.get(k) for k in ("dataset", "upload_id", "curated_rows", "curated_uri")}
        announced["validated_at"] = event.time  # when the rows were curated: runs from then on read them
        events.publish(aws.client("events"), env.event_bus, EventType.FEATURES_INGESTED, announced)
    return result


def curated_objects(s3: Any, detail: dict[str, Any]) -> list[str]:
    """The curated objects of the upload: the one named, or, when it was written in parts (a large upload:
    ``curated_uri`` is then the dataset's prefix), the parts its manifest lists."""
    uri = str(detail["curated_uri"])
    if not uri.endswith("/"):
        return [uri]
    bucket, key = split_s3_uri(str(detail["manifest_uri"]))
    manifest = read_manifest(s3, bucket, key)
    return [f"s3://{bucket}/{obj.key}" for obj in manifest.objects]
