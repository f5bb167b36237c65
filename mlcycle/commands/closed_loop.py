"""The closed loop on a local platform, as ``mlcycle demo`` shows it and the end-to-end test checks it.

drifted traffic through the endpoint (with its labels) -> the scheduled monitors notice -> the alert router
pages PagerDuty and posts to Slack (webhook sinks of the embedded AWS) -> the retraining controller waits
for new labelled rows, and the labelled batch that arrives starts a retraining -> the challenger beats the
champion on the recent labelled window, passes its canary and is promoted -> the next monitor windows
recover -> PagerDuty gets the resolve and Slack the resolved message.

Nothing here tells the platform what to do: the steps only send traffic, upload data and watch. Every
decision (drift, the alert, the retraining, the promotion, the recovery) is taken by the platform's own
functions on the embedded AWS, whose clock runs ``TIME_SCALE`` times faster while the monitors watch (an
hourly monitor window every few seconds).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pandas as pd

from mlcycle import deployment
from mlcycle.alert_settings import AlertChannel, AlertGrouping
from mlcycle.application import cycle
from mlcycle.config import Settings
from mlcycle.example import churn
from mlcycle.local.sagemaker import endpoints
from mlcycle.local.session import LocalPlatform
from mlcycle.local.webhooks import WebhookSink
from mlcycle.monitoring import labels

Say = Callable[[str], None]

#: Virtual seconds per real second while the monitors watch: the hourly window runs every 6 s.
TIME_SCALE = 600
#: Rows per burst of traffic: each burst fills one monitor window (above monitoring.min_rows).
BURST_ROWS = 400
#: Bursts of new-regime traffic at most, after the promotion, for every alert to recover.
RECOVERY_BURSTS = 8
#: The labelled batch that arrives after the drift: the new regime's history, newer than the first data.
NEW_DATA_ROWS = 4000
NEW_DATA_START = datetime(2026, 3, 1, tzinfo=UTC)
#: The webhook sinks' paths (their URLs are the channels' secrets).
SLACK, PAGERDUTY = "/slack", "/pagerduty"


def loop_settings(settings: Settings) -> Settings:
    """``settings`` with what the loop shows: a Slack and a PagerDuty channel (secrets named after the
    prefix), alerts notified as they change (no group wait or interval) and a training window, so that a
    retraining learns the new regime instead of averaging it with the old."""
    alerts = settings.alerts
    kinds = {c.kind for c in alerts.channels}
    added = [
        AlertChannel(name=kind, kind=kind, secret=f"{settings.prefix}/alerts/{kind}")
        for kind in ("slack", "pagerduty")
        if kind not in kinds
    ]
    # Lambdas read the wall clock, not the embedded AWS's sped-up one: a group interval of minutes would
    # hold the resolved notification back for real minutes. With no wait and no interval, a change is
    # notified as it happens (repeats still wait their interval).
    grouping = AlertGrouping(
        group_by=alerts.grouping.group_by, group_wait_seconds=0, group_interval_seconds=0
    )
    retraining = settings.retraining.model_copy(
        update={"training_window_days": settings.retraining.training_window_days or 30}
    )
    return settings.model_copy(
        update={
            "alerts": alerts.model_copy(
                update={"channels": (*alerts.channels, *added), "grouping": grouping}
            ),
            "retraining": retraining,
        }
    )


@dataclass
class Timeline:
    """What happened when, in seconds since the loop began."""

    started: float = field(default_factory=time.monotonic)
    marks: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, what: str) -> None:
        self.marks.append((time.monotonic() - self.started, what))

    def lines(self) -> list[str]:
        return [f"  {seconds:6.1f}s  {what}" for seconds, what in self.marks]


class ClosedLoop:
    """The loop's steps on one local platform; :meth:`run` runs them in order."""

    def __init__(self, local: LocalPlatform, settings: Settings, sink: WebhookSink, say: Say) -> None:
        self.local, self.settings, self.sink, self.say = local, settings, sink, say
        self.timeline = Timeline()
        self._sent = 0

    def run(self) -> Timeline:
        self.connect_channels()
        champion = self.serving_version()
        self.drift()
        self.retrain_on_new_data(champion)
        self.recover()
        return self.timeline

    # -- steps --------------------------------------------------------------------------------------

    def connect_channels(self) -> None:
        """The channels' secrets: the sinks' URLs and a routing key (in AWS, the operator creates them)."""
        secrets = boto3.session.Session(region_name=self.settings.region).client(
            "secretsmanager", endpoint_url=self.local.aws.endpoint_url
        )
        values = {
            "slack": self.sink.url(SLACK),
            "pagerduty": json.dumps(
                {"routing_key": "demo-routing-key", "events_url": self.sink.url(PAGERDUTY)}
            ),
        }
        for channel in self.settings.alerts.channels:
            if channel.secret and channel.kind in values:
                secrets.create_secret(Name=channel.secret, SecretString=values[channel.kind])
        self.say(f"Slack and PagerDuty webhooks point at the embedded AWS's sinks ({self.sink.url('')})")

    def drift(self) -> None:
        """Drifted traffic (and its labels) until the monitors alert on it."""
        self.local.aws.ctx.time_scale = TIME_SCALE
        self.timeline.mark("drifted traffic starts (with its labels)")
        for burst in range(1, 4):
            self.send(churn.generate(BURST_ROWS, seed=700 + burst, drift=1.0))
            self.say(f"sent burst {burst} of drifted traffic ({BURST_ROWS} rows with labels)")
            if self._wait(lambda: self._pagerduty("trigger"), 20, "PagerDuty trigger"):
                break
        else:
            raise cycle.CycleError(f"the monitors raised no alert on drifted traffic\n{self.diagnosis()}")
        self.timeline.mark("monitors found the drift; PagerDuty triggered")
        self._require(lambda: self._slack(resolved=False), 20, "Slack message")
        self.timeline.mark("Slack message posted")
        for line in self.arrived():
            self.say(line)

    def retrain_on_new_data(self, champion: int) -> None:
        """The labelled batch arrives; the controller starts a retraining; the challenger is promoted."""
        started_before = {e["executionArn"] for e in self._executions()}
        self.say(f"uploading the new labelled batch ({NEW_DATA_ROWS} rows of the new regime)")
        batch = churn.generate(NEW_DATA_ROWS, seed=900, drift=1.0, start=NEW_DATA_START)
        self._upload(batch)
        self.timeline.mark("new labelled batch curated")
        arn = self._require(lambda: self._new_execution(started_before), 60, "the controller's training run")
        self.timeline.mark("retraining controller started a training run")
        self.say(f"retraining started: {arn.rsplit(':', 1)[1]} ({self._trigger(arn)})")
        output = cycle.follow_execution(self.local.clients.sfn, arn, self.say, timeout=900)
        registration = output.get("registration", output)
        self.timeline.mark(
            f"challenger v{registration.get('version')} registered ({registration.get('approval_status')})"
        )
        version = self._require(lambda: self._serving_newer(champion), 300, "the challenger's promotion")
        self.timeline.mark(f"challenger v{version} passed its canary and serves")
        self.say(f"model v{version} replaced v{champion} on {self.settings.endpoint_name}")

    def recover(self) -> None:
        """Traffic of the new regime goes on until the monitors recover and every page is resolved (more
        than one alert may have fired: drift, model quality; each recovers in its own windows)."""
        for burst in range(1, RECOVERY_BURSTS + 1):
            self.send(churn.generate(BURST_ROWS, seed=800 + burst, drift=1.0))
            self.say(f"sent burst {burst} of traffic to the new model")
            if self._wait(self._pages_resolved, 20, "resolve of every page"):
                break
        else:
            raise cycle.CycleError(
                f"the alerts did not resolve after the new model served\n{self.diagnosis()}"
            )
        self.timeline.mark("monitors recovered; PagerDuty resolved")
        self._require(lambda: self._slack(resolved=True), 20, "Slack resolved message")
        self.timeline.mark("Slack resolved message posted")

    # -- traffic and data ---------------------------------------------------------------------------

    def send(self, rows: pd.DataFrame) -> None:
        """Each row as one request, its customer id the inference id; its label stored. The clock stands
        still meanwhile and the capture is flushed, so one burst makes one whole window."""
        ctx = self.local.aws.ctx
        with _clock_stopped(ctx):
            clients, features = self.local.clients, list(self.settings.problem.features)
            truth = pd.DataFrame(
                {"inference_id": rows["customer_id"], "label": rows[self.settings.problem.target].astype(int)}
            )
            truth["labelled_at"] = pd.Timestamp.now(tz="UTC")
            labels.store(clients.s3, self.local.platform.monitoring_bucket, truth, source="demo")
            bodies = rows[features].to_csv(header=False, index=False).splitlines()

            def invoke(request: tuple[str, str]) -> None:
                clients.runtime.invoke_endpoint(
                    EndpointName=self.settings.endpoint_name,
                    ContentType="text/csv",
                    Body=request[1],
                    InferenceId=request[0],
                )

            # A few callers at once, as live traffic comes (one at a time, a burst takes 4x as long).
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(invoke, zip(rows["customer_id"].astype(str), bodies, strict=True)))
            endpoints.flush_capture()
        self._sent += len(rows)

    def _upload(self, frame: pd.DataFrame) -> None:
        """Upload a labelled batch as a data team would; wait until it is curated and its features in."""
        clients, platform, dataset = (
            self.local.clients,
            self.local.platform,
            self.settings.problem.dataset.name,
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "new-labelled-batch.csv"
            frame.to_csv(path, index=False)
            upload_id = cycle.upload(clients, platform, path, dataset, self.say)
        keys = cycle.wait_for_curated(clients, platform, dataset, upload_id, self.say)
        cycle.wait_for_features(clients.s3, platform, self.settings, keys, self.say)

    # -- watching -----------------------------------------------------------------------------------

    def serving_version(self) -> int:
        sagemaker = self.local.clients.sagemaker
        endpoint = sagemaker.describe_endpoint(EndpointName=self.settings.endpoint_name)
        package = deployment.package_of(sagemaker, endpoint["EndpointConfigName"])
        return int(package.rsplit("/", 1)[1])

    def _serving_newer(self, champion: int) -> int | None:
        endpoint = self.local.clients.sagemaker.describe_endpoint(EndpointName=self.settings.endpoint_name)
        if endpoint["EndpointStatus"] != "InService":
            return None
        version = self.serving_version()
        return version if version > champion else None

    def _executions(self) -> list[dict[str, Any]]:
        sfn = self.local.clients.sfn
        found: list[dict[str, Any]] = sfn.list_executions(
            stateMachineArn=self.local.platform.training_state_machine
        )["executions"]
        return found

    def _new_execution(self, before: set[str]) -> str | None:
        fresh = [e["executionArn"] for e in self._executions() if e["executionArn"] not in before]
        return fresh[0] if fresh else None

    def _trigger(self, arn: str) -> str:
        described = self.local.clients.sfn.describe_execution(executionArn=arn)
        trigger = json.loads(described["input"]).get("trigger") or {}
        return str(trigger.get("reason") or "no trigger recorded")

    def _pagerduty(self, action: str) -> bool:
        return any(_body(r).get("event_action") == action for r in self.sink.requests(PAGERDUTY))

    def _pages_resolved(self) -> bool:
        """Every incident PagerDuty was sent has been resolved."""
        keys = {
            action: {
                str(_body(r).get("dedup_key"))
                for r in self.sink.requests(PAGERDUTY)
                if _body(r).get("event_action") == action
            }
            for action in ("trigger", "resolve")
        }
        return bool(keys["trigger"]) and keys["trigger"] <= keys["resolve"]

    def _slack(self, *, resolved: bool) -> bool:
        texts = [str(_body(r).get("text", "")) for r in self.sink.requests(SLACK)]
        return any(("RESOLVED" in t.upper()) == resolved for t in texts)

    def arrived(self) -> Iterator[str]:
        """One line per request the sinks received, in order."""
        for path in (SLACK, PAGERDUTY):
            for request in self.sink.requests(path):
                body = _body(request)
                if path == SLACK:
                    yield f"  Slack     <- {str(body.get('text', ''))[:110]}"
                else:
                    summary = body.get("payload", {}).get("summary", "")
                    action, key = body.get("event_action"), str(body.get("dedup_key", ""))[:12]
                    yield f"  PagerDuty <- {action} {key} {summary}"[:130]

    def diagnosis(self) -> str:
        """What the platform did so far: windows, alerts, deliveries, decisions (for a step that failed)."""
        from mlcycle.alerting.state import AlertStore
        from mlcycle.monitoring.windows import MonitorState

        platform, dynamodb = self.local.platform, self.local.clients.dynamodb
        lines = ["monitor windows (newest first):"]
        for window in MonitorState(platform.monitor_table, dynamodb).windows(self.settings.endpoint_name, 8):
            lines.append(f"  {window.get('window_id')}: {window.get('rows')} rows, {window.get('findings')}")
        store = AlertStore(platform.alert_table, dynamodb)
        lines.append("alerts:")
        lines += [f"  {r.alert.status} {r.alert.summary} notes={r.notes}" for r in store.list_alerts()]
        lines.append("deliveries:")
        lines += [f"  {d.channel} {d.state} {d.error}" for d in store.deliveries()]
        endpoint = self.local.clients.sagemaker.describe_endpoint(EndpointName=self.settings.endpoint_name)
        lines.append(
            f"endpoint: {endpoint['EndpointStatus']} config {endpoint['EndpointConfigName']} "
            f"{endpoint.get('FailureReason', '')}"
        )
        lines.append(f"sink: {[(r.path, r.body) for r in self.sink.requests()]}"[:2000])
        return "\n".join(lines)

    def _require(self, probe: Callable[[], Any], timeout: float, what: str) -> Any:
        found = self._wait(probe, timeout, what)
        if not found:
            raise cycle.CycleError(f"no {what} within {timeout:.0f}s\n{self.diagnosis()}")
        return found

    def _wait(self, probe: Callable[[], Any], timeout: float, what: str) -> Any:
        """``probe``'s first truthy answer within ``timeout`` seconds, else None (the caller decides)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.5)
        self.say(f"  (no {what} within {timeout:.0f}s)")
        return None


def _body(request: Any) -> dict[str, Any]:
    body = getattr(request, "body", None)
    return body if isinstance(body, dict) else {}


@contextmanager
def _clock_stopped(ctx: Any) -> Iterator[None]:
    scale = ctx.time_scale
    ctx.time_scale = 0
    try:
        yield
    finally:
        ctx.time_scale = scale
