"""CLI subcommands beyond the core ones in :mod:`mlcycle.cli`, one module each.

Each module exposes ``add_parser(subparsers)`` and sets ``func(args, settings) -> int`` on its parser.
Modules import their heavy dependencies inside the command functions, so ``mlcycle --help`` stays fast.
"""

#: Modules under mlcycle.commands that the CLI registers, in help order.
MODULES = ("data", "query", "features", "lineage", "train", "models")
