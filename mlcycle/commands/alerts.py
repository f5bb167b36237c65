"""``mlcycle alerts``: the alert router's alerts, silences and deliveries (mlcycle.alerting).

Alerts come from the monitors' findings, the platform's alarms, failed training runs and rolled-back
deployments; the router groups, inhibits and silences them as Alertmanager does and notifies the channels
of the settings (``alerts.channels``, ``alerts.routes``). Every alert keeps its thread (notes: when it
fired, resolved, was acknowledged, or started a retraining) and every delivery is kept, failed ones too.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
from datetime import timedelta
from typing import Any

from mlcycle.config import Settings

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

SILENCE_HELP = """\
MATCHER is label=value (exact) or label=~regex (the whole value must match). Labels: alertname
(Drift, ModelQuality, DataQuality, Bias, Kpi, TrainingFailed, DeploymentRolledBack, or an alarm's
name), category (model, system, pipeline), severity, endpoint, model_version, source. A silence mutes
the alerts that match all its matchers until it ends; a muted alert still fires and resolves in
`mlcycle alerts list`, and is notified if it still fires when the silence ends.
"""


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1.5d``."""
    found = _DURATION.match(text.strip())
    if not found:
        raise ValueError(f"a duration reads like 90s, 30m, 2h or 1d, not {text!r}")
    return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})


def _store(settings: Settings) -> Any:
    from mlcycle.alerting.state import AlertStore
    from mlcycle.application.connect import connect

    connection = connect(settings)
    if not connection.platform.alert_table:
        raise SystemExit("this platform has no alert router (deployed before it existed): redeploy")
    return AlertStore(connection.platform.alert_table, connection.client("dynamodb"))


def _who(args: argparse.Namespace) -> str:
    return str(args.by or getpass.getuser())


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    records = _store(settings).list_alerts(open_only=args.open)
    if args.json:
        print(json.dumps([_record_dict(r) for r in records], indent=2, default=str))
        return 0
    if not records:
        print("no open alerts" if args.open else "no alerts")
    for record in records:
        alert = record.alert
        state = alert.status + (" (acked)" if record.acked else "")
        print(
            f"{alert.fingerprint[:12]}  {state:<15} {alert.severity:<8} {alert.summary}  "
            f"[since {alert.starts_at:%Y-%m-%d %H:%M}]"
        )
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    record = _store(settings).get(args.id)
    if args.json:
        print(json.dumps(_record_dict(record), indent=2, default=str))
        return 0
    alert = record.alert
    print(f"{alert.summary}\n  {alert.description}")
    print(f"  id {alert.fingerprint}  status {alert.status}  severity {alert.severity}")
    print("  labels " + ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())))
    for name, link in alert.links.items():
        print(f"  {name}: {link}")
    for item in alert.details[:10]:
        print("  worst: " + ", ".join(f"{k} {v}" for k, v in item.items()))
    for note in record.notes:
        print(f"  {note.get('at', '')}  {note.get('text', '')}")
    return 0


def _record_dict(record: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(record)


def cmd_ack(args: argparse.Namespace, settings: Settings) -> int:
    record = _store(settings).ack(args.id, _who(args))
    print(f"acknowledged {record.alert.fingerprint[:12]}: {record.alert.summary} (no more repeats)")
    return 0


def cmd_resolve(args: argparse.Namespace, settings: Settings) -> int:
    record = _store(settings).resolve(args.id, _who(args))
    print(
        f"resolved {record.alert.fingerprint[:12]}: {record.alert.summary}; "
        "its channels hear of it at the router's next flush"
    )
    return 0


def cmd_silence(args: argparse.Namespace, settings: Settings) -> int:
    duration = parse_duration(args.duration)
    store = _store(settings)
    silence_id = store.add_silence(args.matchers, duration, args.comment, _who(args))
    print(f"silence {silence_id}: {' '.join(args.matchers)} for {args.duration} ({args.comment})")
    return 0


def cmd_silences(args: argparse.Namespace, settings: Settings) -> int:
    silences = _store(settings).silences(active_only=not args.all)
    if not silences:
        print("no silences")
    for silence in silences:
        matchers = " ".join(f"{m.label}{'=~' if m.regex else '='}{m.value}" for m in silence.matchers)
        until = f"{silence.ends_at:%Y-%m-%d %H:%M}Z"
        print(f"{silence.id}  until {until}  {matchers}  by {silence.author}: {silence.comment}")
    return 0


def cmd_unsilence(args: argparse.Namespace, settings: Settings) -> int:
    silence = _store(settings).expire_silence(args.id)
    print(f"silence {silence.id} ended")
    return 0


def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    records = store.failed_deliveries() if args.failed else store.deliveries()
    if not records:
        print("no failed deliveries" if args.failed else "no deliveries")
    for record in records:
        outcome = "sent" if record.ok else f"{record.state}: {record.error or ''}"
        print(
            f"{record.updated_at:%Y-%m-%d %H:%M:%S}  {record.channel:<12} {record.attempts} attempt(s)  "
            f"{outcome}  [{record.group_key}]"
        )
    return 1 if args.failed and records else 0


def cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver a harmless test notification to one channel, from this machine, with its secret."""
    from mlcycle.alerting.channels import test_notification
    from mlcycle.alerting.delivery import Deliverer
    from mlcycle.application.connect import connect

    channel = settings.alerts.channel(args.channel)
    connection = connect(settings)
    deliverer = Deliverer(
        settings.alerts,
        sns=connection.client("sns"),
        topic_arn=connection.platform.alerts_topic or None,
        secrets=_secret_reader(connection),
    )
    result = deliverer.deliver(channel, test_notification(channel.name))
    if result.ok:
        print(
            f"delivered a test notification to {channel.name} ({channel.kind}), attempts: {result.attempts}"
        )
        return 0
    print(f"delivery to {channel.name} ({channel.kind}) failed, attempts: {result.attempts}: {result.error}")
    return 1


def _secret_reader(connection: Any) -> Any:
    client = connection.client("secretsmanager")

    def read(name: str) -> str:
        return str(client.get_secret_value(SecretId=name)["SecretString"])

    return read


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("alerts", help="alerts, silences and deliveries of the alert router")
    actions = parser.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="alerts, newest first (id, status, severity, summary)")
    listing.add_argument("--open", action="store_true", help="only the firing ones")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    listing.set_defaults(func=cmd_list)
    show = actions.add_parser("show", help="one alert: what crossed which threshold, links and its thread")
    show.add_argument("id", metavar="ID", help="the alert's id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    show.set_defaults(func=cmd_show)
    for name, func, text in (
        ("ack", cmd_ack, "acknowledge a firing alert: its notifications stop repeating"),
        (
            "resolve",
            cmd_resolve,
            "resolve a firing alert by hand: its channels get the resolved notification",
        ),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("id", metavar="ID", help="the alert's id (a unique prefix is enough)")
        action.add_argument("--by", help="who (default: your user name)")
        action.set_defaults(func=func)
    silence = actions.add_parser(
        "silence",
        help="mute matching alerts for a while",
        description=SILENCE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    silence.add_argument("matchers", nargs="+", metavar="MATCHER", help="label=value or label=~regex")
    silence.add_argument("--for", dest="duration", required=True, help="how long: 90s, 30m, 2h, 1d")
    silence.add_argument("--comment", required=True, help="why (shown with the silence)")
    silence.add_argument("--by", help="who (default: your user name)")
    silence.set_defaults(func=cmd_silence)
    silences = actions.add_parser("silences", help="the silences in force (or --all, ended ones too)")
    silences.add_argument("--all", action="store_true", help="also the ones that ended")
    silences.set_defaults(func=cmd_silences)
    unsilence = actions.add_parser("unsilence", help="end a silence now")
    unsilence.add_argument("id", metavar="ID")
    unsilence.set_defaults(func=cmd_unsilence)
    deliveries = actions.add_parser("deliveries", help="notifications delivered to channels, failed ones too")
    deliveries.add_argument("--failed", action="store_true", help="only the failed ones (exit 1 if any)")
    deliveries.set_defaults(func=cmd_deliveries)
    test = actions.add_parser("test", help="send a harmless test notification to one channel")
    test.add_argument("channel", metavar="CHANNEL", help="a channel's name from alerts.channels")
    test.set_defaults(func=cmd_test)
