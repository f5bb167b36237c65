"""S3 upload to the landing bucket -> contract check -> curated Parquet / quarantine -> event.

Exactly once: S3 may deliver one event twice, so each record goes through Powertools idempotency keyed
on the object's identity (bucket, key, version, sequencer); a repeat returns the stored result and writes
nothing. Objects larger than ``functions.large_upload_bytes`` start the large-upload state machine
(a Distributed Map over chunks) instead of being read here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, events, runtime
from mlcycle.data import large_uploads
from mlcycle.data.prepare import Recorders, Upload, prepare_upload

logger = Logger()
tracer = Tracer()

#: S3 redelivers within minutes; a day of memory covers that with a wide margin.
IDEMPOTENCY_SECONDS = 24 * 3600


class Environment(runtime.FunctionEnvironment):
    handler = "functions.prepare_data"
    curated_bucket: str
    event_bus: str
    glue_database: str | None = None
    lineage_table: str | None = None
    #: Without a table (a bare test) deterministic keys still bound the harm of a repeat.
    idempotency_table: str | None = None
    #: Without it, every upload is read here, whatever its size.
    large_upload_state_machine: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    prepare = _exactly_once(runtime.environment(Environment), context)
    return {"uploads": [prepare(record=_identity(record)) for record in event.records]}


def _identity(record: S3EventRecord) -> dict[str, Any]:
    obj = record.s3.get_object
    return {
        "bucket": record.s3.bucket.name,
        "key": unquote_plus(obj.key),
        "version_id": obj.version_id,
        "sequencer": obj.get("sequencer"),  # S3 always sends it; the embedded AWS does not
        "size": obj.get("size"),
    }


def _exactly_once(env: Environment, context: LambdaContext) -> Callable[..., dict[str, Any]]:
    if not env.idempotency_table:
        return prepare_record
    config = IdempotencyConfig(expires_after_seconds=IDEMPOTENCY_SECONDS)
    config.register_lambda_context(context)
    layer = DynamoDBPersistenceLayer(table_name=env.idempotency_table, boto3_client=aws.client("dynamodb"))
    wrapped: Callable[..., dict[str, Any]] = idempotent_function(
        prepare_record, data_keyword_argument="record", persistence_store=layer, config=config
    )
    return wrapped


def prepare_record(record: dict[str, Any]) -> dict[str, Any]:
    settings, env = runtime.settings(), runtime.environment(Environment)
    upload = Upload(record["bucket"], record["key"], record["version_id"])
    if (
        env.large_upload_state_machine
        and int(record.get("size") or 0) > settings.functions.large_upload_bytes
    ):
        started = large_uploads.start(aws.client("stepfunctions"), env.large_upload_state_machine, upload)
        logger.info("large upload handed to the state machine", extra=started)
        return started
    result = prepare_upload(
        upload,
        settings,
        s3=aws.client("s3"),
        curated_bucket=env.curated_bucket,
        recorders=Recorders.connect(glue_database=env.glue_database, lineage_table=env.lineage_table),
    )
    for detail_type in result.event_types:
        events.publish(aws.client("events"), env.event_bus, detail_type, result.as_event())
    logger.info("prepared upload", extra=result.as_event())
    return result.as_event()
