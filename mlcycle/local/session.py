"""An embedded AWS with the platform provisioned into it: for the demo, the daemon and the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlcycle import cycle
from mlcycle.config import Settings
from mlcycle.local import server
from mlcycle.local.platform import Platform
from mlcycle.local.provision import Stack, provision

Say = Callable[[str], None]


@dataclass
class LocalPlatform:
    aws: server.EmbeddedAws
    stack: Stack
    platform: Platform
    clients: cycle.Clients


def stack_name(settings: Settings) -> str:
    return settings.prefix


@contextmanager
def local_platform(
    settings: Settings,
    assembly: Path,
    *,
    port: int = 0,
    time_scale: float = 1.0,
    say: Say = lambda _m: None,
) -> Iterator[LocalPlatform]:
    """Start the embedded AWS, provision the synthesized stack into it, stop everything on exit."""
    aws = server.start(port=port or None, region=settings.region, time_scale=time_scale)
    try:
        say(f"embedded AWS listening on {aws.endpoint_url}")
        stack = provision(
            assembly,
            stack_name(settings),
            endpoint_url=aws.endpoint_url,
            region=settings.region,
            account=aws.ctx.account,
        )
        say(
            f"provisioned {len(stack.resources)} resources from "
            f"{assembly}/{stack_name(settings)}.template.json"
        )
        platform = Platform.from_stack(stack)
        clients = cycle.Clients.for_endpoint(aws.endpoint_url, settings.region)
        yield LocalPlatform(aws, stack, platform, clients)
    finally:
        aws.stop()


def run_demo(settings: Settings, *, port: int, assembly: Path, say: Say, steps: Callable[[str], None]) -> int:
    """The main job: synth -> embedded AWS -> upload -> curated -> train -> register -> deploy -> invoke."""
    from infra.app_builder import synth

    steps("synthesizing the CDK app (cdk-nag and cfn-lint gates on)")
    synth(settings, assembly)
    steps("starting the embedded AWS and provisioning the platform from the synthesized template")
    with local_platform(settings, assembly, port=port, say=say) as local:
        c, p = local.clients, local.platform
        steps("uploading the bundled example dataset to the landing bucket")
        cycle.upload(c, p, cycle.bundled_dataset(), settings.problem.dataset.name, say)
        steps("waiting for the prepare-data function to write curated Parquet")
        keys = cycle.wait_for_curated(c, p, settings.problem.dataset.name, say)
        steps("waiting for the ingest-features function to fill the feature views (offline store)")
        cycle.wait_for_features(c, p, settings, keys, say)
        steps("running the training pipeline (state machine -> local SageMaker training job -> registry)")
        output = cycle.run_training(c, p, say)
        registration = output.get("registration", output)
        say(
            f"registered model package version {registration.get('version')} "
            f"({registration.get('approval_status')}); "
            f"{registration.get('metric')} = {registration.get('value'):.4f}"
        )
        steps("waiting for the approval event to deploy the model to the endpoint")
        cycle.wait_for_endpoint(c, settings, say)
        steps("tracing the model's lineage (lineage store)")
        cycle.show_lineage(c, p, str(registration.get("model_package_arn")), say)
        steps("invoking the endpoint with held-out rows")
        scores = cycle.score_holdout(c, settings, say)
        steps("stopping the embedded AWS")
        say(
            f"held-out accuracy {scores['accuracy']:.3f}, "
            f"ROC AUC {scores.get('roc_auc', float('nan')):.3f} on {scores['rows']:.0f} rows"
        )
    getattr(steps, "done", lambda: None)()
    return 0
