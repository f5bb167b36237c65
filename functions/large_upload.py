"""Tasks of the large-upload state machine: plan the chunks, check one chunk, finish the upload."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, events, runtime
from mlcycle.data import large_uploads
from mlcycle.data.prepare import Recorders

logger = Logger()
tracer = Tracer()


class ChunkEnvironment(runtime.FunctionEnvironment):
    """``plan`` and ``chunk``: they write curated parts only."""

    handler = "functions.large_upload"
    curated_bucket: str


class FinishEnvironment(ChunkEnvironment):
    event_bus: str
    glue_database: str | None = None
    lineage_table: str | None = None


#: The environment of each task's handler (the module serves three functions).
ENVIRONMENTS = {"plan": ChunkEnvironment, "chunk": ChunkEnvironment, "finish": FinishEnvironment}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = runtime.environment(ChunkEnvironment)
    chunk_rows = runtime.settings().functions.large_upload_chunk_rows
    planned = large_uploads.plan(
        event, s3=aws.client("s3"), curated_bucket=env.curated_bucket, chunk_rows=chunk_rows
    )
    logger.info("large upload planned", extra={k: v for k, v in planned.items() if k != "header"})
    return planned


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def chunk(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = runtime.environment(ChunkEnvironment)
    return large_uploads.process_chunk(
        event, runtime.settings(), s3=aws.client("s3"), curated_bucket=env.curated_bucket
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def finish(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = runtime.environment(FinishEnvironment)
    result = large_uploads.finish(
        event,
        runtime.settings(),
        s3=aws.client("s3"),
        curated_bucket=env.curated_bucket,
        recorders=Recorders.connect(glue_database=env.glue_database, lineage_table=env.lineage_table),
    )
    for detail_type in result.event_types:
        events.publish(aws.client("events"), env.event_bus, detail_type, result.as_event())
    logger.info("large upload prepared", extra=result.as_event())
    return result.as_event()
