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
    if args.labels:
        # The rows' true labels keyed by customer id: send each row with InferenceId=customer_id, then
        # `mlcycle labels upload` this file for the model quality monitors.
        truth = frame[["customer_id", "churned"]].rename(
            columns={"customer_id": "inference_id", "churned": "label"}
        )
        truth.to_csv(args.labels, index=False)
        say(f"wrote their {len(truth)} labels (inference_id = customer_id) to {args.labels}")
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
    example.add_argument(
        "--labels",
        metavar="FILE",
        help="also write the rows' labels (inference_id = customer_id) for 'mlcycle labels upload'",
    )
    example.set_defaults(func=cmd_example)
