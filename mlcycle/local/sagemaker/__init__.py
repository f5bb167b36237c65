"""SageMaker in the embedded AWS, on moto's SageMaker backend (so boto3, the Step Functions tasks and
CloudFormation all count): training jobs and processing jobs run as local processes laid out like the
scikit-learn container (training, processing; their bookkeeping in jobs), batch transform jobs run
through a local model server (transform, records), endpoints are live model servers (endpoints,
invocations), and the model registry emits its approval events (registry_events).
"""

from __future__ import annotations

import threading

from mlcycle.local import context
from mlcycle.local.context import LocalContext
from mlcycle.local.patching import MethodPatches
from mlcycle.local.sagemaker import (
    endpoints,
    invocations,
    processing,
    registry_events,
    rollouts,
    servers,
    shadows,
    training,
    transform,
)
from mlcycle.local.sagemaker.endpoints import EndpointsState
from mlcycle.local.sagemaker.jobs import JobsState, join_threads

__all__ = ["install", "running_jobs", "uninstall"]


def install(ctx: LocalContext) -> None:
    """Patch moto's SageMaker backend so jobs run and approvals emit events."""
    from moto.sagemaker.models import SageMakerModelBackend as Backend
    from moto.sagemaker.responses import SageMakerResponse as Response

    uninstall_from(ctx)
    patches = MethodPatches()
    ctx.services[JobsState] = JobsState(ctx=ctx, patches=patches)
    patches.replace(
        Backend, "create_training_job", training.create_training_job_patch(Backend.create_training_job)
    )
    patches.replace(Backend, "stop_training_job", training.stop_training_job_patch)
    patches.replace(Response, "stop_training_job", training.stop_training_job_response_patch)
    patches.replace(
        Backend,
        "create_processing_job",
        processing.create_processing_job_patch(Backend.create_processing_job),
    )
    patches.replace(
        Response,
        "create_processing_job",
        processing.create_processing_job_response_patch(Response.create_processing_job),
    )
    patches.replace(
        Backend, "stop_processing_job", processing.stop_processing_job_patch(Backend.stop_processing_job)
    )
    install_transform_jobs(patches)
    patches.replace(
        Backend,
        "create_model_package",
        registry_events.create_model_package_patch(Backend.create_model_package),
    )
    patches.replace(
        Backend,
        "update_model_package",
        registry_events.update_model_package_patch(Backend.update_model_package),
    )
    install_endpoints(ctx)


def install_transform_jobs(patches: MethodPatches) -> None:
    """Batch transform jobs run (moto completes them at once), stop, describe and list as in AWS."""
    from moto.sagemaker.models import SageMakerModelBackend as Backend
    from moto.sagemaker.responses import SageMakerResponse as Response

    for owner, name, patch in (
        (Backend, "create_transform_job", transform.create_transform_job_patch),
        (Backend, "describe_transform_job", transform.describe_transform_job_patch),
        (Backend, "list_transform_jobs", transform.list_transform_jobs_patch),
        (Response, "list_transform_jobs", transform.list_transform_jobs_response_patch),
    ):
        patches.replace(owner, name, patch(getattr(owner, name)))
    patches.replace(Backend, "stop_transform_job", transform.stop_transform_job_patch)
    patches.replace(Response, "stop_transform_job", transform.stop_transform_job_response_patch)


def running_jobs() -> list[str]:
    """Names of jobs whose thread is still alive (tests, diagnostics)."""
    state = context.installed_or_none(JobsState)
    if state is None:
        return []
    with state.lock:
        return [run.name for run in state.runs.values() if run.thread is not None and run.thread.is_alive()]


def uninstall() -> None:
    """Stop every running job (its process group too), wait for the threads, restore moto."""
    ctx = context.running()
    if ctx is not None:
        uninstall_from(ctx)


def uninstall_from(ctx: LocalContext) -> None:
    uninstall_endpoints(ctx)
    state = ctx.services.pop(JobsState, None)
    if state is None:
        return
    with state.lock:
        runs = list(state.runs.values())
    for run in runs:
        run.stop.set()
    join_threads(run.thread for run in runs)
    state.patches.restore()


def install_endpoints(ctx: LocalContext) -> None:
    """Patch moto so endpoints are served by real local model servers."""
    from moto.sagemaker.models import SageMakerModelBackend as Backend
    from moto.sagemaker.responses import SageMakerResponse as Response
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse as Runtime

    patches = MethodPatches()
    state = ctx.services[EndpointsState] = EndpointsState(ctx=ctx, patches=patches)
    patches.replace(Backend, "create_endpoint", rollouts.create_endpoint_patch(Backend.create_endpoint))
    patches.replace(Backend, "delete_endpoint", rollouts.delete_endpoint_patch(Backend.delete_endpoint))
    patches.replace(Backend, "update_endpoint", rollouts.update_endpoint_patch)
    patches.replace(Response, "update_endpoint", rollouts.update_endpoint_response_patch)
    patches.replace(Runtime, "invoke_endpoint", invocations.invoke_endpoint_response_patch)
    shadows.install(patches)
    # Keep request bodies as bytes: moto would decode them as UTF-8 and fail on NPY or other binary input.
    patches.replace(Runtime, "use_raw_body", True)
    threading.Thread(
        target=endpoints.flush_loop, args=(state,), name="endpoint-capture-flush", daemon=True
    ).start()


def uninstall_endpoints(ctx: LocalContext) -> None:
    """Stop every model server and rollout, flush capture, restore moto."""
    state = ctx.services.get(EndpointsState)
    if state is None:
        return
    state.stopping.set()
    with state.lock:
        threads, state.threads = state.threads, []
    for thread in threads:
        thread.join(timeout=servers.server_start_timeout)
    state.copies.shutdown()  # the last shadow answers are captured before the final flush
    endpoints.flush_capture(final=True)
    with state.lock:
        live, state.live = list(state.live.values()), {}
    for endpoint in live:
        endpoint.stop()
    state.patches.restore()
    state.http.clear()
    del ctx.services[EndpointsState]
