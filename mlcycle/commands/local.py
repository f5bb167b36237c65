"""``mlcycle local up | down | status | reset``: the embedded AWS as a background service."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlcycle.commands.demo import say
from mlcycle.config import Settings


def _ensure_assembly(settings: Settings, assembly: Path) -> None:
    """The embedded AWS provisions from a synthesized template: synthesize one when there is none."""
    if not (assembly / f"{settings.prefix}.template.json").exists():
        from infra.app_builder import synth

        say(f"synthesizing the CDK app into {assembly}")
        synth(settings, assembly)


def cmd_local(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.local import daemon

    assembly = Path(args.out)
    if args.action == "down":
        return daemon.down(say=say, keep_state=args.keep_state)
    if args.action == "status":
        return daemon.status(say=say)
    if args.action == "restart" and daemon.down(say=say, keep_state=True) != 0:
        return 1
    if args.action == "reset":
        daemon.down(say=say)
        daemon.forget()
    _ensure_assembly(settings, assembly)
    foreground = args.foreground and args.action == "up"
    return daemon.up(settings, port=args.port, assembly=assembly, foreground=foreground, say=say)


def add_parser(subparsers: Any) -> None:
    local = subparsers.add_parser("local", help="the embedded AWS as a background service on 127.0.0.1")
    local.add_argument(
        "action",
        choices=("up", "down", "status", "restart", "reset"),
        help="up: start (carrying on from a state `down --keep-state` kept, if any: the platform as it "
        "was then, functions included; `reset` provisions a new synth); "
        "down: stop, discarding the state unless --keep-state; "
        "status: where it runs, and what its background work lost (events, metrics, capture, logs), "
        "exit 1 when something was lost, 3 when it does not run; "
        "restart: stop keeping the state and start again from it (running pipelines resume); "
        "reset: stop, discard any kept state, start afresh from the synthesized app",
    )
    local.add_argument(
        "--keep-state",
        action="store_true",
        help="`down`: save the state (data, models, functions, running pipelines and jobs) in "
        ".mlcycle/aws for the next `up` to carry on from",
    )
    local.add_argument("--port", type=int, default=4566, help="port (default: 4566)")
    local.add_argument("--out", default="cdk.out", help="cloud assembly to provision from (default: cdk.out)")
    local.add_argument("--foreground", action="store_true", help="`up`: stay in the foreground until Ctrl-C")
    local.set_defaults(func=cmd_local)
