"""``mlcycle``: the command line. Every command is a thin call into the library (mlcycle.commands).

mlcycle demo                 the whole local ML cycle on the embedded AWS (what `make demo` runs)
mlcycle synth                synthesize the CDK app with its gates (cdk-nag, cfn-lint)
mlcycle local up|down|status|reset   the embedded AWS as a background service
mlcycle example generate     write rows of the example problem (optionally drifted)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from mlcycle.config import DEFAULT_CONFIG_FILE


def parser() -> argparse.ArgumentParser:
    from mlcycle.commands import MODULES

    root = argparse.ArgumentParser(
        prog="mlcycle",
        description="The whole ML cycle as one serverless AWS bundle; runs offline on an embedded AWS.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    root.add_argument(
        "--config",
        default=None,
        help=f"settings file (TOML or JSON; default: ./{DEFAULT_CONFIG_FILE} if present, else the "
        "example churn problem's settings; a file without [problem] is laid over the example's)",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in MODULES:
        importlib.import_module(f"mlcycle.commands.{name}").add_parser(sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # The CDK's jsii runtime prints a banner about Node.js 20's end of life on every synth.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    try:
        from mlcycle.application.settings import resolve_settings

        settings = resolve_settings(args.config)
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI's one place to turn failures into a message and an exit code
        from mlcycle.application.connect import NotConnectedError
        from mlcycle.application.cycle import CycleError

        if isinstance(exc, CycleError | FileNotFoundError | LookupError | ValueError | NotConnectedError):
            print(f"mlcycle: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
