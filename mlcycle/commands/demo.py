"""``mlcycle demo``: the whole local ML cycle on the embedded AWS (what ``make demo`` runs).

synth -> embedded AWS provisioned from the template -> upload -> curated -> features -> train ->
register -> deploy -> lineage -> invoke, then the closed loop (mlcycle.commands.closed_loop): drifted
traffic -> monitors -> Slack and PagerDuty -> guarded retraining on the new data -> canary promotion ->
recovery -> resolved. Every step goes through the AWS APIs the deployed platform uses.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlcycle.config import Settings

Say = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


class Steps:
    """Numbered progress lines with the time each step took."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.started = total, 0, time.monotonic()
        self._step_started = self.started

    def __call__(self, title: str) -> None:
        now = time.monotonic()
        if self.n:
            say(f"    ({now - self._step_started:.1f}s)")
        self.n += 1
        self._step_started = now
        say(f"[{self.n}/{self.total}] {title}")

    def done(self) -> float:
        elapsed = time.monotonic() - self.started
        say(f"    ({time.monotonic() - self._step_started:.1f}s)")
        return elapsed


def run_demo(settings: Settings, *, port: int, assembly: Path, say: Say, steps: Steps) -> int:
    from infra.app_builder import synth
    from mlcycle.application import cycle
    from mlcycle.commands.closed_loop import ClosedLoop, loop_settings
    from mlcycle.local.session import local_platform
    from mlcycle.local.webhooks import WebhookSink

    settings = loop_settings(settings)
    steps("synthesizing the CDK app (cdk-nag and cfn-lint gates on)")
    synth(settings, assembly)
    steps("starting the embedded AWS and provisioning the platform from the synthesized template")
    with local_platform(settings, assembly, port=port, say=say) as local, WebhookSink() as sink:
        c, p = local.clients, local.platform
        steps("uploading the bundled example dataset to the landing bucket")
        dataset = settings.problem.dataset.name
        upload_id = cycle.upload(c, p, cycle.bundled_dataset(), dataset, say)
        steps("waiting for the prepare-data function to write curated Parquet")
        keys = cycle.wait_for_curated(c, p, dataset, upload_id, say)
        steps("waiting for the ingest-features function to fill the feature views (offline store)")
        cycle.wait_for_features(c.s3, p, settings, keys, say)
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
        say(
            f"held-out accuracy {scores['accuracy']:.3f}, "
            f"ROC AUC {scores.get('roc_auc', float('nan')):.3f} on {scores['rows']:.0f} rows"
        )
        loop = ClosedLoop(local, settings, sink, say)
        steps("closing the loop: Slack and PagerDuty webhooks point at sinks of the embedded AWS")
        loop.connect_channels()
        champion = loop.serving_version()
        steps("drifted traffic goes through the endpoint until the scheduled monitors alert")
        loop.drift()
        steps("new labelled data arrives: the retraining controller retrains; the challenger is promoted")
        loop.retrain_on_new_data(champion)
        steps("traffic goes on: the next monitor windows recover and the alerts resolve")
        loop.recover()
        say("what reached the webhook sinks:")
        for line in loop.arrived():
            say(line)
        say("the loop, from drift to resolved:")
        for line in loop.timeline.lines():
            say(line)
        steps("stopping the embedded AWS")
    steps.done()
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    return run_demo(settings, port=args.port, assembly=Path(args.out), say=say, steps=Steps(14))


def cmd_synth(args: argparse.Namespace, settings: Settings) -> int:
    from infra.app_builder import synth

    started = time.monotonic()
    template = synth(settings, Path(args.out))
    say(f"synthesized {template} with cdk-nag and cfn-lint gates passed in {time.monotonic() - started:.1f}s")
    return 0


def add_parser(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole local ML cycle on the embedded AWS and print the results"
    )
    demo.add_argument("--port", type=int, default=0, help="port for the embedded AWS (default: a free one)")
    demo.add_argument("--out", default="cdk.out", help="where to synthesize the CDK app (default: cdk.out)")
    demo.set_defaults(func=cmd_demo)

    synth = subparsers.add_parser(
        "synth", help="synthesize the CDK app; fails on any cdk-nag or cfn-lint finding"
    )
    synth.add_argument("--out", default="cdk.out", help="cloud assembly directory (default: cdk.out)")
    synth.set_defaults(func=cmd_synth)
