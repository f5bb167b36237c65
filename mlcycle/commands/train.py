"""``mlcycle train [--wait]``: start the training pipeline and, with --wait, follow it to its end."""

from __future__ import annotations

import argparse
from typing import Any

from mlcycle.config import Settings


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.application import cycle
    from mlcycle.application.connect import connect

    connection = connect(settings)
    sfn = connection.client("stepfunctions")
    poll = args.poll_seconds if args.poll_seconds is not None else (1 if connection.local else 30)
    pipeline_input: dict[str, Any] = {"poll_seconds": poll}
    if args.dataset:
        pipeline_input["dataset"] = args.dataset
    if args.inject_model_errors is not None:
        pipeline_input["fault_injection"] = {"model_error_rate": args.inject_model_errors}
    arn = cycle.start_training(sfn, connection.platform, pipeline_input)
    print(f"started {arn}")
    if not args.wait:
        return 0
    output = cycle.follow_execution(sfn, arn, print, timeout=args.timeout)
    registration = output.get("registration", {})
    print(
        f"registered version {registration.get('version')} ({registration.get('approval_status')}): "
        f"{registration.get('metric')} = {registration.get('value')}"
    )
    return 0


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share in (0, 1]")
    return value


def add_parser(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="start the training pipeline (--wait follows it to the end)")
    train.add_argument(
        "--wait", action="store_true", help="follow the execution state by state until it ends"
    )
    train.add_argument("--dataset", help="the dataset to train on (default: the configured problem's)")
    train.add_argument(
        "--poll-seconds",
        type=int,
        default=None,
        help="how often the pipeline polls the training job (default: 1 locally, 30 in AWS)",
    )
    train.add_argument("--timeout", type=float, default=3600, help="--wait gives up after this many seconds")
    train.add_argument(
        "--inject-model-errors",
        type=_rate,
        metavar="SHARE",
        help="fault injection, to test the deployment guardrails: the model this run registers fails this "
        "share (0 < SHARE <= 1) of its predictions once deployed, so the rollback alarms should take it back "
        "(the model package says so in its metadata)",
    )
    train.set_defaults(func=cmd_train)
