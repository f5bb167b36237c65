"""S3 upload to the landing bucket -> contract check -> curated Parquet / quarantine -> event."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, events, runtime
from mlcycle.data.prepare import Upload, prepare_upload

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    env = runtime.environment()
    results = []
    for record in event.records:
        obj = record.s3.get_object
        upload = Upload(record.s3.bucket.name, unquote_plus(obj.key), obj.version_id)
        result = prepare_upload(
            upload, runtime.settings(), s3=aws.client("s3"), curated_bucket=env.curated_bucket
        )
        for detail_type in result.event_types:
            events.publish(aws.client("events"), env.event_bus, detail_type, result.as_event())
        logger.info("prepared upload", extra=result.as_event())
        results.append(result.as_event())
    return {"uploads": results}
