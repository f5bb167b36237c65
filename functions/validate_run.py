"""Step Functions task: check a training run's input and settings, then write the run document.

The run document (``s3://{artifacts}/runs/{execution}/run.json``) is what the evaluation job reads: the
problem, the model-test settings, the quality gate and the champion's metrics at the start of the run,
and the trigger and recent labelled window the retraining controller passed (the window's object is
copied next to it as ``recent.parquet``; a window whose object is missing fails the run).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlcycle import aws, pipeline_runs, runtime
from mlcycle.pipeline_runs import PipelineRequest

logger = Logger()
tracer = Tracer()


class Environment(runtime.FunctionEnvironment):
    handler = "functions.validate_run"
    artifacts_bucket: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PipelineRequest.model_validate(event)
    settings, env = runtime.settings(), runtime.environment(Environment)
    run = pipeline_runs.start_run(
        settings,
        execution_name=request.execution_name,
        dataset=request.input.dataset,
        poll_seconds=request.input.poll_seconds,
        fault_injection=request.input.fault_injection,
        recent_window=request.input.recent_window,
        trigger=request.input.trigger,
        s3=aws.client("s3"),
        sagemaker=aws.client("sagemaker"),
        artifacts_bucket=env.artifacts_bucket,
    )
    logger.info("run validated", extra=run)
    return run
