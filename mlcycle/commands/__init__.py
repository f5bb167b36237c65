"""The CLI's subcommands, one module each (:mod:`mlcycle.cli` only parses and dispatches).

Each module exposes ``add_parser(subparsers)`` and sets ``func(args, settings) -> int`` on its parser.
Modules import their heavy dependencies inside the command functions, so ``mlcycle --help`` stays fast.
"""

#: Modules under mlcycle.commands that the CLI registers, in help order.
MODULES = (
    "demo",
    "local",
    "data",
    "query",
    "features",
    "lineage",
    "train",
    "models",
    "endpoints",
    "predict",
    "monitor",
    "labels",
    "alerts",
    "retraining",
    "example",
)
