"""``mlcycle alerts`` over the alert router's table (moto): list, show, ack, resolve, silence, deliveries;
and ``mlcycle retraining status`` rendering."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from mlcycle.alerting.model import DeliveryResult
from mlcycle.alerting.router import Router
from mlcycle.alerting.state import AlertStore
from mlcycle.commands import alerts as cli
from mlcycle.commands.retraining import render
from mlcycle.config import Settings
from tests.utils import REGION, make_key_table


def _drift(id: str, kind: str = "DriftDetected") -> dict[str, Any]:
    return {
        "id": id,
        "time": (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "mlcycle",
        "detail-type": kind,
        "detail": {
            "endpoint": "mlcycle-dev-endpoint",
            "model_version": 2,
            "window_id": "w1",
            "finding": "drift",
            "report_uri": "s3://reports/w1/report.html",
            "worst": [{"feature": "tenure_months", "test": "wasserstein", "score": 0.4, "threshold": 0.1}],
        },
    }


@pytest.fixture
def store(settings: Settings, moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> AlertStore:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    make_key_table(dynamodb, "alerts")
    found = AlertStore("alerts", dynamodb)
    monkeypatch.setattr(cli, "_store", lambda _settings: found)
    return found


def _at_once(settings: Settings) -> Settings:
    """Notified as they come (no group wait)."""
    grouping = settings.alerts.grouping.model_copy(update={"group_wait_seconds": 0})
    return settings.model_copy(update={"alerts": settings.alerts.model_copy(update={"grouping": grouping})})


def _args(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**({"by": "ana", "json": False, "open": False} | values))


def test_list_show_ack_resolve_an_alert(
    settings: Settings, store: AlertStore, capsys: pytest.CaptureFixture[str]
) -> None:
    router = Router(settings, store, lambda channel, n: DeliveryResult(channel.name, True, 1))
    router.receive(_drift("e1"))
    assert cli.cmd_list(_args(open=True), settings) == 0
    listed = capsys.readouterr().out
    assert "firing" in listed and "Drift" in listed, listed
    fingerprint = listed.split()[0]
    assert cli.cmd_show(_args(id=fingerprint), settings) == 0
    shown = capsys.readouterr().out
    assert "tenure_months" in shown and "s3://reports/w1/report.html" in shown, shown
    assert cli.cmd_ack(_args(id=fingerprint), settings) == 0
    assert "acknowledged" in capsys.readouterr().out
    assert cli.cmd_resolve(_args(id=fingerprint), settings) == 0
    assert cli.cmd_list(_args(open=True), settings) == 0
    assert "no open alerts" in capsys.readouterr().out.splitlines()[-1]
    assert any("ana" in str(note) for note in store.get(fingerprint).notes)


def test_silence_with_a_duration_and_end_it(
    settings: Settings, store: AlertStore, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(matchers=["alertname=Drift", "endpoint=~.*-dev-.*"], duration="2h", comment="known shift")
    assert cli.cmd_silence(args, settings) == 0
    (silence,) = store.silences()
    assert silence.ends_at - silence.starts_at == timedelta(hours=2)
    assert cli.cmd_silences(_args(all=False), settings) == 0
    assert "known shift" in capsys.readouterr().out
    assert cli.cmd_unsilence(_args(id=silence.id), settings) == 0
    assert store.silences() == []


def test_durations_parse_or_say_what_they_should_look_like() -> None:
    assert cli.parse_duration("90s") == timedelta(seconds=90)
    assert cli.parse_duration("1.5d") == timedelta(days=1.5)
    with pytest.raises(ValueError, match="like 90s, 30m, 2h or 1d"):
        cli.parse_duration("2 hours")


def test_failed_deliveries_exit_non_zero(
    settings: Settings, store: AlertStore, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = DeliveryResult("email", False, 4, 500, "HTTP 500")
    router = Router(_at_once(settings), store, lambda channel, n: failing)
    router.receive(_drift("e2"))
    router.flush()
    assert cli.cmd_deliveries(_args(failed=True), settings) == 1
    assert "HTTP 500" in capsys.readouterr().out


def test_retraining_status_renders_each_guard() -> None:
    lines = render(
        {
            "lock": None,
            "last_run": {
                "execution_name": "retrain-1",
                "started_at": "2031-03-04T10:00:00Z",
                "reason": "drift",
            },
            "cooldown_until": "2031-03-04T16:00:00Z",
            "runs_today": 1,
            "max_runs_per_day": 3,
            "new_rows": 120,
            "min_new_labelled_rows": 500,
            "pending": [{"type": "DriftDetected", "endpoint": "e", "since": "2031-03-04T11:00:00Z"}],
            "decisions": [
                {"decided_at": "t", "action": "deferred", "event_type": "DriftDetected", "reason": "r"}
            ],
        }
    )
    text = "\n".join(lines)
    assert "single flight: free" in text and "1 of 3 runs today" in text and "120 labelled rows" in text
    assert "waiting:       DriftDetected on e" in text and "deferred" in text
