"""``mlcycle monitor run | status | report``: the endpoint's monitor windows (mlcycle.monitoring.monitor).

``run`` judges a window now, as the schedule does (the capture that arrived since the last window);
``status`` lists the latest windows and the open findings; ``report`` fetches a window's HTML report.
They talk to the embedded AWS when ``mlcycle local up`` runs, else to the deployed stack.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlcycle.config import Settings


def _platform(settings: Settings) -> Any:
    from mlcycle.application.connect import connect
    from mlcycle.monitoring import monitor

    connection = connect(settings)
    platform = connection.platform
    if not platform.monitor_table:
        raise LookupError(
            "this platform has no monitor table: deploy (or `mlcycle local reset`) the current app"
        )
    return monitor.Platform(
        s3=connection.client("s3"),
        sagemaker=connection.client("sagemaker"),
        dynamodb=connection.client("dynamodb"),
        events=connection.client("events"),
        event_bus=platform.event_bus,
        monitoring_bucket=platform.monitoring_bucket,
        state_table=platform.monitor_table,
    )


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.monitoring import monitor

    window_id = args.window or f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    result = monitor.run_window(settings, _platform(settings), window_id)
    if args.json:
        print(json.dumps(result.__dict__, indent=2, default=str))
        return 0
    replay = " (already judged: nothing counted again)" if result.replayed else ""
    print(f"window     {result.window_id}{replay}")
    print(f"status     {result.status}: {result.rows} rows from {result.capture_objects} capture files")
    print(f"model      version {result.model_version}")
    for kind, verdict in result.findings.items():
        print(f"{kind:<14} {'-' if verdict is None else ('BREACHED' if verdict else 'ok')}")
    for event in result.events:
        print(f"event      {event['detail_type']}")
    if result.report_uri:
        print(f"report     {result.report_uri.replace('report.json', 'report.html')}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.monitoring import monitor, windows

    platform = _platform(settings)
    state = windows.MonitorState(platform.state_table, platform.dynamodb)
    endpoint = settings.endpoint_name
    recent = state.windows(endpoint, limit=args.limit)
    if not recent:
        print(
            f"no monitor window of {endpoint} yet (they run every {settings.monitoring.schedule_minutes} min)"
        )
    for window in recent:
        findings = ", ".join(f"{k}={'-' if v is None else v}" for k, v in window.get("findings", {}).items())
        head = f"{window['window_id']}  {window['status']:<17} {window['rows']:>7} rows"
        print(f"{head}  v{window['model_version']}  {findings}")
    open_findings = [kind for kind, _, _ in monitor.FINDINGS if state.finding(endpoint, kind).open]
    print(f"open       {', '.join(open_findings) if open_findings else 'none'}")
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from mlcycle.aws import split_s3_uri
    from mlcycle.monitoring import windows

    platform = _platform(settings)
    state = windows.MonitorState(platform.state_table, platform.dynamodb)
    judged = [w for w in state.windows(settings.endpoint_name, limit=50) if w.get("report_uri")]
    if args.window:
        judged = [w for w in judged if w["window_id"] == args.window]
    if not judged:
        raise LookupError("no window with a report yet" + (f" with id {args.window}" if args.window else ""))
    window = judged[0]
    bucket, key = split_s3_uri(str(window["report_uri"]).replace("report.json", "report.html"))
    out = Path(args.out or f"monitor-report-{window['window_id'].replace(':', '-')}.html")
    out.write_bytes(platform.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    print(f"{out} (window {window['window_id']}, s3://{bucket}/{key})")
    if args.open:
        import webbrowser

        webbrowser.open(out.resolve().as_uri())
    return 0


def add_run(actions: Any) -> None:
    run = actions.add_parser("run", help="judge a monitor window now, as the schedule does")
    run.add_argument("--window", help="the window's id (default: now); the same id again replays it")
    run.add_argument("--json", action="store_true", help="print the window's result as JSON")
    run.set_defaults(func=cmd_run)


def add_status(actions: Any) -> None:
    status = actions.add_parser("status", help="the latest monitor windows and the open findings")
    status.add_argument("--limit", type=int, default=10, help="how many windows (default: 10)")
    status.set_defaults(func=cmd_status)


def add_report(actions: Any) -> None:
    report = actions.add_parser("report", help="fetch a window's HTML report (default: the latest)")
    report.add_argument("--window", help="the window's id (see `mlcycle monitor status`)")
    report.add_argument("--out", help="where to write it (default: monitor-report-WINDOW.html)")
    report.add_argument("--open", action="store_true", help="open it in the browser")
    report.set_defaults(func=cmd_report)
