"""``mlcycle retraining status``: what the retraining controller decided and why.

Every trigger (monitor findings, validated uploads, the schedule) goes through the controller's guards
(mlcycle.retraining): single flight, a cooldown since the last run, a daily budget and a minimum of new
labelled rows. This shows where each guard stands and the latest decisions with their reasons.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC
from typing import Any

from mlcycle.config import Settings


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.application.connect import connect
    from mlcycle.retraining.state import status

    connection = connect(settings)
    platform, sfn = connection.platform, connection.client("stepfunctions")
    if not platform.retraining_table:
        print("this platform has no retraining controller (deployed before it existed): redeploy")
        return 1
    executions = sfn.list_executions(stateMachineArn=platform.training_state_machine, maxResults=100)
    starts = [e["startDate"] for e in executions["executions"]]
    found = status(
        settings,
        dynamodb=connection.client("dynamodb"),
        table=platform.retraining_table,
        stepfunctions=sfn,
        decisions=args.decisions,
        trained_since=max(starts).astimezone(UTC) if starts else None,
    )
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    for line in render(found):
        print(line)
    return 0


def render(found: dict[str, Any]) -> list[str]:
    lock, last = found["lock"], found["last_run"]
    lines = [
        "single flight: "
        + (
            f"{lock['execution_name']} ({lock['execution_status'] or 'unknown'}, lock until {lock['until']})"
            if lock
            else "free"
        ),
        "last run:      "
        + (f"{last['execution_name']} at {last['started_at']}: {last['reason']}" if last else "none yet"),
        f"cooldown:      {'until ' + found['cooldown_until'] if found['cooldown_until'] else 'none'}",
        f"budget:        {found['runs_today']} of {found['max_runs_per_day']} runs today",
        f"new rows:      {found['new_rows']} labelled rows since the last run "
        f"({found['min_new_labelled_rows']} needed for a finding to start one)",
    ]
    for pending in found["pending"]:
        lines.append(f"waiting:       {pending['type']} on {pending['endpoint']} since {pending['since']}")
    if found["decisions"]:
        lines.append("decisions (newest first):")
    for decision in found["decisions"]:
        lines.append(
            f"  {decision.get('decided_at', '')}  {decision.get('action', ''):<9} "
            f"{decision.get('event_type', '')}: {decision.get('reason', '')}"
        )
        # What went wrong on the way without stopping the decision (a recent window not exported, ...).
        lines.extend(f"      note: {note}" for note in decision.get("notes") or [])
    return lines


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("retraining", help="the retraining controller's guards and decisions")
    actions = parser.add_subparsers(dest="retraining_command", required=True, metavar="ACTION")
    show = actions.add_parser(
        "status",
        help="single flight, cooldown, budget, new labelled rows, waiting findings and the latest decisions",
    )
    show.add_argument("--decisions", type=int, default=10, help="how many recent decisions (default 10)")
    show.add_argument("--json", action="store_true", help="print the status as JSON")
    show.set_defaults(func=cmd_status)
