"""The storm, whole: 100 DriftDetected events within a minute reach the alert router and the retraining
controller at once, from concurrent invocations (moto; a webhook sink plays PagerDuty and Slack).

One page, one Slack message, one training run: the router's conditional writes and the controller's
single flight hold together, with the real deliverer posting over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from mlcycle.alert_settings import AlertChannel, AlertChannels, AlertGrouping
from mlcycle.alerting.delivery import Deliverer
from mlcycle.alerting.router import Router
from mlcycle.alerting.state import AlertStore
from mlcycle.config import RetrainingSettings, Settings
from mlcycle.local.webhooks import WebhookSink
from mlcycle.retraining import controller as rc
from tests.utils import REGION, atomic_requests, make_key_table


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as running:
        yield running


def _settings(settings: Settings) -> Settings:
    alerts = AlertChannels(
        channels=(
            AlertChannel(name="pager", kind="pagerduty", secret="pd"),
            AlertChannel(name="chat", kind="slack", secret="slack"),
        ),
        grouping=AlertGrouping(group_wait_seconds=0, group_interval_seconds=300),
    )
    retraining = RetrainingSettings(min_new_labelled_rows=500, cooldown_minutes=360, recent_windows=0)
    return settings.model_copy(update={"alerts": alerts, "retraining": retraining})


def _drift(i: int, at: datetime) -> dict[str, Any]:
    return {
        "id": f"drift-{i}",
        "time": (at + timedelta(seconds=i * 0.5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "mlcycle",
        "detail-type": "DriftDetected",
        "detail": {
            "endpoint": "mlcycle-dev-endpoint",
            "model_version": 1,
            "window_id": f"w{i}",
            "finding": "drift",
            "report_uri": "s3://reports/w/report.html",
            "worst": [{"feature": "tenure_months", "test": "wasserstein", "score": 0.4, "threshold": 0.1}],
        },
    }


def test_a_storm_of_drift_events_gives_one_page_and_one_training_run(
    settings: Settings, moto_aws: None, sink: WebhookSink
) -> None:
    config = _settings(settings)
    session = boto3.session.Session(region_name=REGION)
    dynamodb, sfn, events = (
        atomic_requests(session.client(n)) for n in ("dynamodb", "stepfunctions", "events")
    )
    make_key_table(dynamodb, "alerts")
    make_key_table(dynamodb, "retraining")
    events.create_event_bus(Name="bus")
    machine = sfn.create_state_machine(
        name="training",
        definition=json.dumps({"StartAt": "Train", "States": {"Train": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/states",
    )["stateMachineArn"]
    secrets = {
        "pd": json.dumps({"routing_key": "rk", "events_url": sink.url("/pd")}),
        "slack": sink.url("/slack"),
    }
    deliverer = Deliverer(config.alerts, sns=None, topic_arn=None, secrets=secrets.__getitem__)
    router = Router(config, AlertStore("alerts", dynamodb), deliverer.deliver)
    platform = rc.Platform(
        dynamodb=dynamodb,
        stepfunctions=sfn,
        events=events,
        table="retraining",
        state_machine=machine,
        event_bus="bus",
    )
    controller = rc.Controller(config, platform)
    # GIVEN enough new labelled rows since the last training
    controller.handle(
        {
            "id": "upload-1",
            "time": datetime.now(UTC).isoformat(),
            "source": "mlcycle",
            "detail-type": "FeaturesIngested",
            "detail": {"dataset": config.problem.dataset.name, "upload_id": "u1", "curated_rows": 800},
        }
    )
    # WHEN 100 DriftDetected events arrive within a minute, each delivered to both at once, 8 at a time
    start = datetime.now(UTC) - timedelta(minutes=1)
    storm = [_drift(i, start) for i in range(100)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(router.receive, storm))
        decisions = list(pool.map(controller.handle, storm))
        list(pool.map(lambda _: router.flush(), range(8)))
    # THEN PagerDuty was paged once and Slack told once
    pages = [r.body for r in sink.requests("/pd")]
    assert [p["event_action"] for p in pages] == ["trigger"], pages
    assert len(sink.requests("/slack")) == 1
    # AND one training run started; every other event was turned down by a guard
    assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 1
    assert sum(d.action == "started" for d in decisions) == 1
    assert all(d.action == "deferred" for d in decisions if d.action != "started")
