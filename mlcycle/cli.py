"""``mlcycle``: the command line. Every command is a thin call into the library.

mlcycle demo                 the whole local cycle on the embedded AWS (what `make demo` runs)
mlcycle synth                synthesize the CDK app with its gates (cdk-nag, cfn-lint)
mlcycle local up|down|status|reset   the embedded AWS as a background service
mlcycle example generate     write rows of the example problem (optionally drifted)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlcycle.config import DEFAULT_CONFIG_FILE, Settings, load_settings


def _say(message: str) -> None:
    print(message, flush=True)


class _Steps:
    """Numbered progress lines with the time each step took."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.started = total, 0, time.monotonic()
        self._step_started = self.started

    def __call__(self, title: str) -> None:
        now = time.monotonic()
        if self.n:
            _say(f"    ({now - self._step_started:.1f}s)")
        self.n += 1
        self._step_started = now
        _say(f"[{self.n}/{self.total}] {title}")

    def done(self) -> float:
        elapsed = time.monotonic() - self.started
        _say(f"    ({time.monotonic() - self._step_started:.1f}s)")
        return elapsed


def cmd_synth(args: argparse.Namespace, settings: Settings) -> int:
    from infra.app_builder import synth

    started = time.monotonic()
    template = synth(settings, Path(args.out))
    _say(
        f"synthesized {template} with cdk-nag and cfn-lint gates passed in {time.monotonic() - started:.1f}s"
    )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.local.session import run_demo

    return run_demo(settings, port=args.port, assembly=Path(args.out), say=_say, steps=_Steps(10))


def cmd_local(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.local import daemon

    if args.action == "up":
        return daemon.up(
            settings, port=args.port, assembly=Path(args.out), foreground=args.foreground, say=_say
        )
    if args.action == "down":
        return daemon.down(say=_say)
    if args.action == "status":
        return daemon.status(say=_say)
    daemon.down(say=_say)
    return daemon.up(settings, port=args.port, assembly=Path(args.out), foreground=False, say=_say)


def cmd_example(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.example import churn

    frame = churn.generate(args.rows, seed=args.seed, drift=args.drift)
    frame.to_csv(args.out, index=False)
    _say(f"wrote {len(frame)} rows (seed {args.seed}, drift {args.drift}) to {args.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="mlcycle",
        description="The whole ML cycle as one serverless AWS bundle; runs offline on an embedded AWS.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    root.add_argument(
        "--config",
        default=None,
        help=f"settings file (TOML or JSON; default: ./{DEFAULT_CONFIG_FILE} if present)",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="run the whole local ML cycle on the embedded AWS and print the results"
    )
    demo.add_argument("--port", type=int, default=0, help="port for the embedded AWS (default: a free one)")
    demo.add_argument("--out", default="cdk.out", help="where to synthesize the CDK app (default: cdk.out)")
    demo.set_defaults(func=cmd_demo)

    synth = sub.add_parser("synth", help="synthesize the CDK app; fails on any cdk-nag or cfn-lint finding")
    synth.add_argument("--out", default="cdk.out", help="cloud assembly directory (default: cdk.out)")
    synth.set_defaults(func=cmd_synth)

    local = sub.add_parser("local", help="the embedded AWS as a background service on 127.0.0.1")
    local.add_argument("action", choices=("up", "down", "status", "reset"))
    local.add_argument("--port", type=int, default=4566, help="port (default: 4566)")
    local.add_argument("--out", default="cdk.out", help="cloud assembly to provision from (default: cdk.out)")
    local.add_argument("--foreground", action="store_true", help="`up`: stay in the foreground until Ctrl-C")
    local.set_defaults(func=cmd_local)

    example = sub.add_parser("example", help="the example problem's data generator")
    example.add_argument("action", choices=("generate",))
    example.add_argument("--rows", type=int, default=5000)
    example.add_argument("--seed", type=int, default=0)
    example.add_argument(
        "--drift", type=float, default=0.0, help="0 = like the training data, 1 = strongly drifted"
    )
    example.add_argument("--out", default="churn.csv")
    example.set_defaults(func=cmd_example)
    _add_command_modules(sub)
    return root


def _add_command_modules(sub: Any) -> None:
    """The subcommands that live in mlcycle.commands (one module each)."""
    from mlcycle.commands import MODULES

    for name in MODULES:
        try:
            module = importlib.import_module(f"mlcycle.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mlcycle.commands.{name}":
                raise
            continue  # not built yet
        module.add_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # The CDK's jsii runtime prints a banner about Node.js 20's end of life on every synth.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    try:
        settings = load_settings(args.config)
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI's one place to turn failures into a message and an exit code
        from mlcycle.commands.connect import NotConnectedError
        from mlcycle.cycle import CycleError

        if isinstance(exc, CycleError | FileNotFoundError | LookupError | ValueError | NotConnectedError):
            print(f"mlcycle: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
