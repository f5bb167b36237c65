"""SageMaker through a restart of the embedded AWS (``mlcycle.local.persistence``).

The snapshot keeps every job and endpoint as moto holds them; what ran on this machine (job processes,
model servers) is gone with the old process. After the restart:

* a training or processing job that was in progress runs again from its beginning, under its name, in a
  clean directory (as SageMaker restarts a job whose instance was lost); a pipeline polling it sees it in
  progress, then finished. One that was stopping ends Stopped. A batch transform job in progress fails
  with a reason that says why (its partial output would be mixed with a new run's);
* an endpoint in service is served again by new model servers of its current configuration before the
  restart returns; one being created is created again; an update in flight is abandoned (the endpoint
  serves its previous configuration and its FailureReason says so).
"""

from __future__ import annotations

from typing import Any

from mlcycle.local.common.values import utcnow
from mlcycle.local.context import LocalContext
from mlcycle.local.sagemaker import processing, training
from mlcycle.local.sagemaker.endpoints import EndpointsState, deploy_fleet, endpoint_key
from mlcycle.local.sagemaker.jobs import JobsState
from mlcycle.local.sagemaker.rollouts import start_rollout

INTERRUPTED = "the embedded AWS restarted while this {what} was in progress"


def resume(ctx: LocalContext) -> dict[str, int]:
    """Run again, serve again or end what the snapshot kept in flight; return how many of each."""
    from moto.sagemaker.models import sagemaker_backends

    jobs, endpoints = ctx.services[JobsState], ctx.services[EndpointsState]
    counts = {"training": 0, "processing": 0, "transform": 0, "endpoints": 0}
    backend: Any
    for _account, _region, backend in sagemaker_backends.iter_backends():
        for job in list(backend.training_jobs.values()):
            if job.training_job_status in ("InProgress", "Stopping"):
                training.restart_training_job(jobs, job)
                counts["training"] += 1
        for job in list(backend.processing_jobs.values()):
            if job.processing_job_status in ("InProgress", "Stopping"):
                processing.restart_processing_job(jobs, job)
                counts["processing"] += 1
        for job in list(backend.transform_jobs.values()):
            if job.transform_job_status in ("InProgress", "Stopping"):
                job.transform_job_status, job.transform_end_time = "Failed", utcnow()
                job.failure_reason = INTERRUPTED.format(what="transform job")
                counts["transform"] += 1
        for endpoint in list(backend.endpoints.values()):
            counts["endpoints"] += _serve_again(endpoints, backend, endpoint)
    return counts


def _serve_again(state: EndpointsState, backend: Any, endpoint: Any) -> int:
    status = endpoint.endpoint_status
    if status not in ("InService", "Updating", "SystemUpdating", "Creating"):
        return 0
    config = backend.endpoint_configs[endpoint.endpoint_config_name]
    if status == "Creating":
        start_rollout(state, backend, endpoint, config, fallback="Failed")
        return 1
    live = deploy_fleet(state, backend, endpoint.endpoint_name, config)
    with state.lock:
        state.live[endpoint_key(backend, endpoint.endpoint_name)] = live
        if status != "InService":
            endpoint.endpoint_status = "InService"
            endpoint.failure_reason = INTERRUPTED.format(what="update")
    return 1
