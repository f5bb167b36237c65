"""The retraining controller: the one way a trigger starts the training pipeline.

Triggers are monitor findings named in ``settings.retraining.on_findings`` (their ``...Recovered``
withdraw them), uploads of new labelled rows (``FeaturesIngested`` when feature views provide the
problem's features, else ``DatasetValidated``; a trigger of their own with ``on_new_data``) and the
schedule. Each goes through the guards, in this order, and the first that
refuses names the reason:

1. single flight: the lock's execution still runs, or any execution of the state machine runs;
2. cooldown: a run started less than ``cooldown_minutes`` ago;
3. budget: ``max_runs_per_day`` runs started this UTC day;
4. new rows (findings and new data, not the schedule): fewer than ``min_new_labelled_rows`` labelled rows
   arrived since the last run started. A finding refused only for this waits (pending) and the upload
   that completes the rows starts its run.

A start is claimed in DynamoDB first (mlcycle.retraining.state), then the execution is started under a
name derived from the decision, so a storm of concurrent invocations starts one run and a retried one
resumes the run it claimed. The decision is kept in the table, the run linked to its trigger in the
lineage, and ``RetrainingStarted`` (or, when the answer changes, ``RetrainingDeferred``) put on our bus.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mlcycle import events, lineage
from mlcycle.config import Settings
from mlcycle.names import EVENT_SOURCE, EventType
from mlcycle.pipeline_runs import PipelineInput, RecentWindow, RetrainingTrigger
from mlcycle.retraining.state import (
    ATTEMPTS,
    Claim,
    ContentionError,
    Guard,
    Lock,
    Refusal,
    RetrainingState,
    Run,
    Snapshot,
    backoff,
    budget,
    cooldown,
    iso,
    new_rows,
)
from mlcycle.training_sets import covering_views

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

log = logging.getLogger(__name__)

SCHEDULE, NEW_DATA = "Schedule", "NewData"
SCHEDULED_EVENT, SCHEDULER_SOURCE = "Scheduled Event", "aws.events"
#: Each finding's recovery, which withdraws the finding's pending trigger.
RECOVERIES = {
    EventType.DRIFT_RECOVERED: EventType.DRIFT_DETECTED,
    EventType.MODEL_QUALITY_RECOVERED: EventType.MODEL_QUALITY_DEGRADED,
    EventType.KPI_RECOVERED: EventType.KPI_BREACHED,
    EventType.DATA_QUALITY_RECOVERED: EventType.DATA_QUALITY_VIOLATED,
    EventType.BIAS_RECOVERED: EventType.BIAS_DETECTED,
}
Action = Literal["started", "deferred", "cleared", "counted", "ignored"]
#: A claimed lock whose execution does not exist yet is held this long: its invocation is starting it.
START_GRACE = timedelta(minutes=15)
TRIGGER_ARTIFACT = "trigger"
#: Where the controller exports a run's recent labelled window (the run's first step copies it under
#: the run's own prefix, so it is written outside ``runs/``).
RECENT_WINDOWS_PREFIX = "recent-windows/"


class WindowExporter(Protocol):
    """``mlcycle.monitoring.recent.export_recent_window``'s signature (None: no labelled rows)."""

    def __call__(
        self,
        settings: Settings,
        *,
        s3: S3Client,
        dynamodb: DynamoDBClient,
        monitor_table: str,
        monitoring_bucket: str,
        artifacts_bucket: str,
        key: str,
    ) -> RecentWindow | None: ...


def export_recent_window(settings: Settings, **kwargs: Any) -> RecentWindow | None:
    """The monitors' recent labelled window, imported when first needed (the module is optional here)."""
    from mlcycle.monitoring.recent import export_recent_window as export

    window: RecentWindow | None = export(settings, **kwargs)
    return window


def alert_fingerprint(event: dict[str, Any], settings: Settings) -> str | None:
    """The fingerprint of the alert a finding raised, to thread the run into it (None without alerting)."""
    try:
        from mlcycle.alerting.alerts import alert_from_event
    except ImportError:
        return None
    alert = alert_from_event(event, settings)
    return str(alert.fingerprint) if alert is not None else None


@dataclass(frozen=True)
class Platform:
    """The controller's AWS: clients and the names of its table, state machine and bus."""

    dynamodb: DynamoDBClient
    stepfunctions: SFNClient
    events: EventBridgeClient
    table: str
    state_machine: str
    event_bus: str
    s3: S3Client | None = None
    lineage_table: str | None = None
    monitor_table: str | None = None
    monitoring_bucket: str | None = None
    artifacts_bucket: str | None = None


@dataclass(frozen=True)
class Incoming:
    """One event as the controller reads it: EventBridge's id, the type (detail-type, or Schedule)."""

    id: str
    type: str
    detail: dict[str, Any]
    raw: dict[str, Any]

    @property
    def rows_since(self) -> datetime | None:
        """When an upload's rows were curated: ``validated_at`` (FeaturesIngested carries the time of the
        DatasetValidated it follows), else the event's own time, if it says."""
        return _time(self.detail.get("validated_at")) or _time(self.raw.get("time"))

    @property
    def endpoint(self) -> str:
        return str(self.detail.get("endpoint") or "-")


def _time(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC) if text else None
    except ValueError:
        return None


@dataclass
class Decision:
    """What the controller made of one event (kept in its table; the handler returns it)."""

    action: Action
    reason: str
    event_id: str
    event_type: str
    decided_at: str
    trigger: dict[str, Any] | None = None
    guard: Guard | None = None
    retry_after: str | None = None
    #: A finding refused only for lack of new rows, kept until an upload completes them.
    pending: bool = False
    execution_name: str | None = None
    execution_arn: str | None = None
    new_rows: int = 0
    recent_window: dict[str, Any] | None = None
    #: True when a redelivered event found its run already started (nothing was started again).
    replayed: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def utcnow() -> datetime:
    return datetime.now(UTC)


def execution_name(moment: datetime, event_id: str) -> str:
    """``retrain-<UTC yyyymmddHHMM>-<hash of the deciding event>``: the same decision, the same name."""
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:10]
    return f"retrain-{moment.astimezone(UTC):%Y%m%d%H%M}-{digest}"


def execution_arn(state_machine_arn: str, name: str) -> str:
    """An execution's ARN, known before it starts (the lock names it)."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


def parse(event: dict[str, Any], fallback_id: str = "") -> Incoming:
    """An EventBridge event (ours, or a schedule's) or an explicit ``{"trigger": "Schedule"}``."""
    event_id = str(event.get("id") or fallback_id)
    if event.get("trigger") == SCHEDULE or (
        event.get("source") == SCHEDULER_SOURCE and event.get("detail-type") == SCHEDULED_EVENT
    ):
        return Incoming(event_id or f"schedule-{utcnow():%Y%m%d%H%M}", SCHEDULE, {}, event)
    detail = event.get("detail") if event.get("source") == EVENT_SOURCE else None
    return Incoming(event_id, str(event.get("detail-type", "")), dict(detail or {}), event)


class Controller:
    """Decides on each trigger. ``clock``, ``export_window`` and ``fingerprint`` are injectable so tests
    control time and need neither the monitors' window export nor the alerting package."""

    def __init__(
        self,
        settings: Settings,
        platform: Platform,
        *,
        clock: Callable[[], datetime] = utcnow,
        export_window: WindowExporter = export_recent_window,
        fingerprint: Callable[[dict[str, Any], Settings], str | None] = alert_fingerprint,
    ) -> None:
        self.settings, self.platform, self.policy = settings, platform, settings.retraining
        self.clock, self.export_window, self.fingerprint = clock, export_window, fingerprint
        self.state = RetrainingState(platform.table, platform.dynamodb)
        self.lineage = (
            lineage.LineageStore(platform.lineage_table, client=platform.dynamodb)
            if platform.lineage_table
            else None
        )

    @property
    def _new_rows_event(self) -> str:
        """The event that says labelled rows can be trained on: ``FeaturesIngested`` when feature views
        provide the problem's features (a training set built before they are in finds no features for
        those rows), else ``DatasetValidated``."""
        covered = covering_views(self.settings.feature_views, self.settings.problem)
        return EventType.FEATURES_INGESTED if covered else EventType.DATASET_VALIDATED

    def handle(self, event: dict[str, Any], fallback_id: str = "") -> Decision:
        """Decide on one event and keep the decision."""
        incoming = parse(event, fallback_id)
        decision = self._decide(incoming)
        self.state.record_decision(decision.as_dict(), self.clock())
        return decision

    def _decide(self, incoming: Incoming) -> Decision:
        if incoming.type == self._new_rows_event:
            return self._on_data(incoming)
        if incoming.type in self.policy.on_findings:
            return self._on_finding(incoming)
        if incoming.type in RECOVERIES:
            return self._on_recovery(incoming)
        if incoming.type == SCHEDULE:
            return self._on_schedule(incoming)
        return self._decision("ignored", incoming, f"{incoming.type or 'this event'} triggers no retraining")

    # -- the triggers --------------------------------------------------------------------------------

    def _on_finding(self, incoming: Incoming) -> Decision:
        def trigger(snapshot: Snapshot) -> RetrainingTrigger:
            reason = (
                f"{self._finding(incoming)}, with {snapshot.new_rows} new labelled rows since the last "
                f"run (at least {self.policy.min_new_labelled_rows} needed)"
            )
            return self._trigger(incoming, reason)

        return self._try_start(incoming, trigger, needs_rows=True, pending=incoming)

    def _on_recovery(self, incoming: Incoming) -> Decision:
        kind = RECOVERIES[EventType(incoming.type)]
        if self.state.clear_pending(kind, incoming.endpoint):
            reason = f"{incoming.type} on {incoming.endpoint}: its pending {kind} trigger is withdrawn"
            return self._decision("cleared", incoming, reason)
        return self._decision("ignored", incoming, f"{incoming.type} on {incoming.endpoint}: nothing pending")

    def _on_schedule(self, incoming: Incoming) -> Decision:
        reason = f"schedule {self.policy.schedule}" if self.policy.schedule else "scheduled by hand"
        return self._try_start(incoming, lambda _: self._trigger(incoming, reason), needs_rows=False)

    def _on_data(self, incoming: Incoming) -> Decision:
        """Count the upload's rows (once per event), then start a waiting finding's run, or a new-data
        run when ``on_new_data``, if the rows now suffice."""
        detail, dataset = incoming.detail, self.settings.problem.dataset.name
        if detail.get("dataset") != dataset:
            return self._decision("ignored", incoming, f"not the problem's dataset {dataset!r}")
        rows = int(detail.get("curated_rows") or 0)
        # Counted as of when the rows were curated, not this invocation's time: an upload the newest
        # training run started after is not new to it, however late its events are handled.
        counted = self.state.count_rows(incoming.id, rows, incoming.rows_since or self.clock())
        snapshot = self._read()
        upload = f"upload {detail.get('upload_id', incoming.id)}"
        enough = snapshot.new_rows >= self.policy.min_new_labelled_rows
        if snapshot.pending and enough:
            return self._try_start(incoming, lambda s: self._completed(s, upload), needs_rows=True)
        if self.policy.on_new_data:
            return self._try_start(incoming, lambda s: self._new_data(incoming, s, upload), needs_rows=True)
        note = "" if counted else " (redelivered: its rows were counted before)"
        reason = (
            f"{upload}: {rows} labelled rows{note}; {snapshot.new_rows} since the last run "
            f"({self.policy.min_new_labelled_rows} needed, {len(snapshot.pending)} finding(s) waiting)"
        )
        return self._decision("counted", incoming, reason, new_rows=snapshot.new_rows)

    def _completed(self, snapshot: Snapshot, upload: str) -> RetrainingTrigger:
        """The oldest waiting finding, started by the upload that completed its rows (says both)."""
        if not snapshot.pending:  # answered by a concurrent run meanwhile: the guards will refuse
            return RetrainingTrigger(type=NEW_DATA, reason=f"{upload}: no finding waits any more")
        waiting = snapshot.pending[0]
        finding = parse(waiting.event)
        reason = (
            f"{self._finding(finding)}, waiting since {iso(waiting.since)} for new labelled rows; "
            f"{upload} brought them to {snapshot.new_rows} (at least {self.policy.min_new_labelled_rows})"
        )
        return self._trigger(finding, reason)

    def _new_data(self, incoming: Incoming, snapshot: Snapshot, upload: str) -> RetrainingTrigger:
        reason = (
            f"new data: {upload} of {incoming.detail.get('dataset')}; {snapshot.new_rows} new labelled "
            f"rows since the last run (at least {self.policy.min_new_labelled_rows})"
        )
        return RetrainingTrigger(type=NEW_DATA, reason=reason, event_id=incoming.id)

    def _finding(self, incoming: Incoming) -> str:
        detail = incoming.detail
        version = detail.get("model_version")
        return f"{incoming.type} on {incoming.endpoint}" + (f" (model v{version})" if version else "")

    def _trigger(self, incoming: Incoming, reason: str) -> RetrainingTrigger:
        detail = incoming.detail
        finding = incoming.type in self.policy.on_findings
        return RetrainingTrigger(
            type=incoming.type,
            reason=reason,
            event_id=incoming.id,
            alert_fingerprint=self.fingerprint(incoming.raw, self.settings) if finding else None,
            endpoint=detail.get("endpoint"),
            model_version=detail.get("model_version"),
            report_uri=detail.get("report_uri"),
        )

    # -- deciding ------------------------------------------------------------------------------------

    def _try_start(
        self,
        incoming: Incoming,
        trigger: Callable[[Snapshot], RetrainingTrigger],
        *,
        needs_rows: bool,
        pending: Incoming | None = None,
    ) -> Decision:
        """Guards, then a claim; a claim lost to a concurrent invocation is decided again on its result."""
        for attempt in range(ATTEMPTS):
            snapshot = self._read()
            run = snapshot.last_run
            if run is not None and run.decided_by == incoming.id:
                return self._launch(incoming, run, snapshot)  # a retried event resumes its own run
            now, wanted = self.clock(), trigger(snapshot)
            refusal, stale = self._refusal(snapshot, now, needs_rows=needs_rows)
            if refusal is not None:
                return self._defer(incoming, wanted, snapshot, refusal, pending)
            claim = self._claim(incoming, wanted, now, stale)
            if self.state.claim(snapshot, claim):
                return self._launch(incoming, claim.run, snapshot)
            backoff(attempt)
        raise ContentionError(f"no decision on {incoming.id} after {ATTEMPTS} attempts")

    def _refusal(
        self, snapshot: Snapshot, now: datetime, *, needs_rows: bool
    ) -> tuple[Refusal | None, str | None]:
        """The first guard that refuses (None: all pass), and a stale lock the claim may replace."""
        refusal, stale = self._single_flight(snapshot.lock, now)
        policy = self.policy
        refusal = refusal or cooldown(snapshot, policy, now) or budget(snapshot, policy, now)
        if refusal is None and needs_rows:
            refusal = new_rows(snapshot, policy)
        return refusal, stale

    def _read(self) -> Snapshot:
        """The state, with the new rows counted since the newest training run, whoever started it."""
        return self.state.read(trained_since=self._last_training_start())

    def _last_training_start(self) -> datetime | None:
        """When the newest execution of the pipeline started (AWS lists the newest first; moto may not,
        so the page's maximum)."""
        executions = self.platform.stepfunctions.list_executions(
            stateMachineArn=self.platform.state_machine, maxResults=100
        )["executions"]
        starts = [e["startDate"] for e in executions]
        return max(starts).astimezone(UTC) if starts else None

    def _single_flight(self, lock: Lock | None, now: datetime) -> tuple[Refusal | None, str | None]:
        """Held while the lock's execution runs (or is being started), within ``lock_minutes``; an
        expired lock, or one whose execution ended, is stale and may be replaced. Any other running
        execution (started by hand) also refuses."""
        if lock is not None and lock.until > now:
            status = self._status(lock.execution_arn)
            starting = status is None and now - lock.acquired_at < START_GRACE
            if status == "RUNNING" or starting:
                state = "is still running" if status else "is being started"
                reason = f"single flight: training run {lock.execution_name} {state}"
                return Refusal("single_flight", f"{reason} (lock until {iso(lock.until)})", lock.until), None
        stale = lock.execution_name if lock is not None else None
        running = self.platform.stepfunctions.list_executions(
            stateMachineArn=self.platform.state_machine, statusFilter="RUNNING", maxResults=1
        )["executions"]
        if running:
            name = running[0]["name"]
            return Refusal("single_flight", f"single flight: execution {name} of the pipeline runs"), stale
        return None, stale

    def _status(self, arn: str) -> str | None:
        """The execution's status; None when it does not exist (yet)."""
        sfn = self.platform.stepfunctions
        try:
            return sfn.describe_execution(executionArn=arn)["status"]
        except sfn.exceptions.ExecutionDoesNotExist:
            return None

    def _claim(
        self, incoming: Incoming, trigger: RetrainingTrigger, now: datetime, stale: str | None
    ) -> Claim:
        name = execution_name(now, incoming.id)
        arn = execution_arn(self.platform.state_machine, name)
        run = Run(name, arn, now, incoming.id, trigger.model_dump(), trigger.reason)
        lock = Lock(name, arn, now, now + timedelta(minutes=self.policy.lock_minutes))
        return Claim(run=run, lock=lock, stale_lock=stale)

    def _defer(
        self,
        incoming: Incoming,
        trigger: RetrainingTrigger,
        snapshot: Snapshot,
        refusal: Refusal,
        pending: Incoming | None,
    ) -> Decision:
        """Refuse; a finding short only of rows waits; the deferral is news only the first time."""
        now = self.clock()
        waits = refusal.guard == "new_rows" and pending is not None
        if waits and pending is not None:
            self.state.keep_pending(pending.type, pending.endpoint, pending.raw, now)
        decision = self._decision(
            "deferred",
            incoming,
            refusal.reason,
            trigger=trigger.model_dump(),
            guard=refusal.guard,
            retry_after=iso(refusal.retry_after) if refusal.retry_after else None,
            pending=waits,
            new_rows=snapshot.new_rows,
        )
        epoch = snapshot.last_run.execution_name if snapshot.last_run else "-"
        key = f"{trigger.type}#{trigger.endpoint or '-'}"
        if self.state.mark_deferred(epoch, key, refusal.guard, now):
            detail = {k: getattr(decision, k) for k in ("guard", "reason", "retry_after", "event_id")}
            detail |= {"trigger": decision.trigger, "pending": waits}
            events.publish(
                self.platform.events, self.platform.event_bus, EventType.RETRAINING_DEFERRED, detail
            )
        return decision

    # -- starting ------------------------------------------------------------------------------------

    def _launch(self, incoming: Incoming, run: Run, snapshot: Snapshot) -> Decision:
        """Start the claimed run (again, harmlessly, when a retried invocation resumes it), link it to its
        trigger and announce it once."""
        trigger = RetrainingTrigger.model_validate(run.trigger)
        decision = self._decision(
            "started",
            incoming,
            run.reason,
            trigger=run.trigger,
            execution_name=run.execution_name,
            execution_arn=run.execution_arn,
            new_rows=snapshot.new_rows,
            replayed=run.published,
        )
        if run.published:
            return decision
        window = self._recent_window(run.execution_name, decision)
        payload = PipelineInput(
            dataset=self.settings.problem.dataset.name, trigger=trigger, recent_window=window
        )
        self._start(run, payload)
        self._record_lineage(run, trigger)
        detail = {
            "execution_arn": run.execution_arn,
            "execution_name": run.execution_name,
            "trigger": run.trigger,
            "reason": run.reason,
            "recent_window": decision.recent_window,
        }
        events.publish(self.platform.events, self.platform.event_bus, EventType.RETRAINING_STARTED, detail)
        self.state.mark_published(run.execution_name)
        return decision

    def _start(self, run: Run, payload: PipelineInput) -> None:
        """Start the execution; one already started under the name (an earlier attempt of this decision:
        the name is the decision's) is the run."""
        sfn = self.platform.stepfunctions
        with contextlib.suppress(sfn.exceptions.ExecutionAlreadyExists):
            sfn.start_execution(
                stateMachineArn=self.platform.state_machine,
                name=run.execution_name,
                input=payload.model_dump_json(exclude_none=True),
            )

    def _recent_window(self, name: str, decision: Decision) -> RecentWindow | None:
        """The monitors' labelled rows for judging the challenger, when configured. A failed export
        starts the run without them (noted in the decision): a retraining must not hang on the monitors."""
        p = self.platform
        if not (self.policy.recent_windows > 0 and p.monitor_table and p.monitoring_bucket):
            return None
        if p.s3 is None or p.artifacts_bucket is None:
            return None
        try:
            window = self.export_window(
                self.settings,
                s3=p.s3,
                dynamodb=p.dynamodb,
                monitor_table=p.monitor_table,
                monitoring_bucket=p.monitoring_bucket,
                artifacts_bucket=p.artifacts_bucket,
                key=f"{RECENT_WINDOWS_PREFIX}{name}.parquet",
            )
        except Exception as exc:
            log.warning("recent window not exported for %s", name, exc_info=True)
            decision.notes.append(f"recent window not exported: {type(exc).__name__}: {exc}")
            return None
        decision.recent_window = window.model_dump() if window is not None else None
        return window

    def _record_lineage(self, run: Run, trigger: RetrainingTrigger) -> None:
        """trigger -> the run, as the run's first step records itself (``build_training_set:{execution}``),
        so the trigger leads on to the training set and the model."""
        if self.lineage is None:
            return
        properties = {"type": trigger.type, "reason": trigger.reason, "endpoint": trigger.endpoint}
        properties |= {"report": trigger.report_uri, "alert_fingerprint": trigger.alert_fingerprint}
        artifact = lineage.Artifact(
            lineage.artifact_id(TRIGGER_ARTIFACT, trigger.event_id or run.decided_by),
            TRIGGER_ARTIFACT,
            trigger.report_uri or "",
            properties,
        )
        execution = lineage.Execution(
            lineage.artifact_id(lineage.BUILD_TRAINING_SET, run.execution_name), lineage.BUILD_TRAINING_SET
        )
        self.lineage.record(execution, inputs=[artifact])

    def _decision(self, action: Action, incoming: Incoming, reason: str, **fields: Any) -> Decision:
        return Decision(
            action=action,
            reason=reason,
            event_id=incoming.id,
            event_type=incoming.type,
            decided_at=iso(self.clock()),
            **fields,
        )
