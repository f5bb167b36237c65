"""``mlcycle lineage ARTIFACT``: where an artifact came from and what it went into, as a tree.

ARTIFACT is an id (``upload:3f2a...``, ``curated_version:3f2a...``, ``training_set:<execution>``) or a
bare local id (an upload id, a training-set id), tried under each artifact type.
"""

from __future__ import annotations

import argparse
from typing import Any

from mlcycle.config import Settings


def cmd_lineage(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.application.connect import connect
    from mlcycle.lineage import LineageStore, render

    connection = connect(settings)
    if not connection.platform.lineage_table:
        print("this platform has no lineage table (provisioned before lineage existed)")
        return 1
    store = LineageStore(connection.platform.lineage_table, client=connection.client("dynamodb"))
    found = store.resolve(args.artifact)
    if found is None:
        print(f"no artifact {args.artifact!r} in the lineage store")
        return 1
    upstream = store.trace(found, "upstream", max_depth=args.depth)
    downstream = store.trace(found, "downstream", max_depth=args.depth)
    print(render(store.artifact(found), upstream, downstream))
    return 0


def add_parser(subparsers: Any) -> None:
    lineage = subparsers.add_parser("lineage", help="the chain of an artifact, upstream and downstream")
    lineage.add_argument("artifact", help="artifact id, or an upload / training-set id")
    lineage.add_argument("--depth", type=int, default=25, help="steps to follow each way (default 25)")
    lineage.set_defaults(func=cmd_lineage)
