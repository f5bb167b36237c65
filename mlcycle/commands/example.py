"""``mlcycle example generate``: rows of the example churn problem, optionally drifted."""

from __future__ import annotations

import argparse
from typing import Any

from mlcycle.commands.demo import say
from mlcycle.config import Settings


def cmd_example(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.example import churn

    frame = churn.generate(args.rows, seed=args.seed, drift=args.drift)
    frame.to_csv(args.out, index=False)
    say(f"wrote {len(frame)} rows (seed {args.seed}, drift {args.drift}) to {args.out}")
    return 0


def add_parser(subparsers: Any) -> None:
    example = subparsers.add_parser("example", help="the example problem's data generator")
    example.add_argument("action", choices=("generate",))
    example.add_argument("--rows", type=int, default=5000)
    example.add_argument("--seed", type=int, default=0)
    example.add_argument(
        "--drift", type=float, default=0.0, help="0 = like the training data, 1 = strongly drifted"
    )
    example.add_argument("--out", default="churn.csv")
    example.set_defaults(func=cmd_example)
