"""The alert router: Alertmanager's pipeline on Lambda and DynamoDB.

``receive`` turns one event into alert state (each event id once) and puts the alert in a group per
route it takes. ``flush`` runs Alertmanager's timers over the groups: a group's first notification goes
out ``group_wait`` after its first alert (so an alert storm makes one page), later changes at most every
``group_interval``, and a group still firing (and not acknowledged) is repeated every
``repeat_interval``. Silenced and inhibited alerts are left out; a resolved alert that was notified
firing is notified resolved once (a page must close), then forgotten by its group.

Any number of routers may run at once: a notification is claimed (a conditional write on the group's
version) before it is sent, so only one of them sends it, and each channel's delivery is kept. A failed
delivery is retried by later flushes (with backoff, up to a limit) without resending to the channels that
took it; :class:`FlushResult` names the failures so the handler can fail the invocation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from mlcycle.alert_settings import AlertChannel
from mlcycle.alerting import rules
from mlcycle.alerting.alerts import alert_from_event, note_from_event, now_utc
from mlcycle.alerting.model import Alert, DeliveryResult, Notification
from mlcycle.alerting.records import AlertRecord, DeliveryRecord, GroupRecord
from mlcycle.alerting.state import AlertStore
from mlcycle.config import Settings

Deliver = Callable[[AlertChannel, Notification], DeliveryResult]
Outcome = Literal["duplicate", "ignored", "fired", "refreshed", "resolved", "stale", "noted", "unknown"]
Reason = Literal["first", "update", "repeat"]

#: Flushes that try a failed delivery before it is given up (each try is ``max_attempts`` sends).
RETRY_LIMIT = 6
#: The wait before a failed delivery's next try, doubled per try up to ``MAX_RETRY_BACKOFF``.
RETRY_BACKOFF = timedelta(seconds=60)
MAX_RETRY_BACKOFF = timedelta(minutes=30)
#: Claims a flush attempts on one group before leaving it to the next flush (others keep changing it).
CLAIM_ATTEMPTS = 4


class DeliveryFailedError(RuntimeError):
    """A notification could not be delivered to some channels (after the deliverer's own retries). The
    handler raises it so Lambda retries the invocation and, at last, sends the event to the dead-letter
    queue; the deliveries stay listed (``failed_deliveries``) and later flushes retry them."""

    def __init__(self, failed: Sequence[DeliveryRecord]) -> None:
        self.failed = list(failed)
        channels = sorted({d.channel for d in failed})
        details = "; ".join(f"{d.channel}: {d.error or d.status or 'failed'}" for d in failed)
        super().__init__(f"alert delivery failed to {', '.join(channels)} ({details})")


@dataclass
class FlushResult:
    """What a flush sent: the deliveries that went out, and those that failed this time."""

    sent: list[DeliveryRecord] = field(default_factory=list)
    failed: list[DeliveryRecord] = field(default_factory=list)
    #: The notifications delivered or attempted, one per channel.
    notifications: list[Notification] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed_channels(self) -> list[str]:
        return sorted({d.channel for d in self.failed})

    def merge(self, other: FlushResult) -> FlushResult:
        return FlushResult(
            [*self.sent, *other.sent],
            [*self.failed, *other.failed],
            [*self.notifications, *other.notifications],
        )


@dataclass(frozen=True)
class ReceiveResult:
    event_id: str
    outcome: Outcome
    fingerprint: str | None = None
    #: The groups the event changed (one per route the alert takes; none when it still fired).
    groups: tuple[str, ...] = ()
    #: The flush of those groups, when ``group_wait`` is 0.
    flushed: FlushResult | None = None

    @property
    def duplicate(self) -> bool:
        return self.outcome == "duplicate"


@dataclass(frozen=True)
class Plan:
    """What a group's flush decided: the alerts to tell, what the group will have notified, and why."""

    reason: Reason
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    notified: dict[str, str]
    still_firing: bool


def retry_backoff(tries: int) -> timedelta:
    factor: int = 2 ** max(tries - 1, 0)
    return min(RETRY_BACKOFF * factor, MAX_RETRY_BACKOFF)


class Router:
    def __init__(
        self,
        settings: Settings,
        store: AlertStore,
        deliver: Deliver,
        clock: Callable[[], datetime] = now_utc,
        *,
        retry_limit: int = RETRY_LIMIT,
    ) -> None:
        self.settings, self.store, self.deliver, self.clock = settings, store, deliver, clock
        self.retry_limit = retry_limit

    # -- receive -----------------------------------------------------------------------------------

    def receive(self, event: Mapping[str, Any]) -> ReceiveResult:
        """Process one event once (by its id); with ``group_wait`` 0, notify its groups right away."""
        event_id = str(event.get("id") or "")
        if event_id and not self.store.claim_event(event_id, self.clock()):
            return ReceiveResult(event_id, "duplicate")
        try:
            outcome, fingerprint, groups = self._apply(event)
        except BaseException:
            if event_id:
                self.store.release_event(event_id)
            raise
        if event_id:
            self.store.finish_event(event_id, outcome)
        flushed = None
        if groups and self.settings.alerts.grouping.group_wait_seconds == 0:
            flushed = self.flush(groups)
        return ReceiveResult(event_id, outcome, fingerprint, tuple(groups), flushed)

    def _apply(self, event: Mapping[str, Any]) -> tuple[Outcome, str | None, list[str]]:
        note = note_from_event(event)
        if note is not None:
            return ("noted" if self.store.add_note(note) else "unknown"), note.fingerprint, []
        alert = alert_from_event(event, self.settings)
        if alert is None:
            return "ignored", None, []
        outcome: Outcome
        if alert.status == "resolved":
            at = alert.ends_at or alert.starts_at
            resolved = self.store.resolve_alert(
                alert.fingerprint, at, event_id=alert.event_id, why=alert.description
            )
            outcome = "resolved" if resolved else "unknown"
        else:
            outcome = self.store.fire(alert)
        if outcome in ("unknown", "stale"):
            return outcome, alert.fingerprint, []
        return outcome, alert.fingerprint, self._join(alert, refreshed=outcome == "refreshed")

    def _join(self, alert: Alert, *, refreshed: bool) -> list[str]:
        """Put the alert in its group on each route; the groups it changed (an alert that still fires
        changes none, so a storm's repeats neither hold off nor trigger flushes)."""
        grouping, keys = self.settings.alerts.grouping, []
        for route in rules.routes_for(alert.labels, self.settings.alerts):
            key = rules.group_key(route, alert.labels, grouping)
            labels = rules.group_labels(alert.labels, grouping)
            firing = alert.status == "firing"
            changed = self.store.join_group(
                key,
                labels,
                route.channels,
                alert.fingerprint,
                firing=firing,
                now=self.clock(),
                unless_member=refreshed,
            )
            if changed:
                keys.append(key)
        return keys

    # -- flush -------------------------------------------------------------------------------------

    def flush(self, keys: Iterable[str] | None = None) -> FlushResult:
        """Send what is due: failed deliveries whose backoff elapsed (on a full flush), then every group's
        (or those of ``keys``) notification whose timer elapsed."""
        result = FlushResult() if keys is not None else self.retry_failed()
        groups = self.store.groups(None if keys is None else list(keys))
        if not groups:
            return result
        alerts, silences = self.store.alerts(), self.store.silences()
        for group in groups:
            result = result.merge(self._flush_group(group, alerts, silences))
        return result

    def retry_failed(self) -> FlushResult:
        """Try again the failed deliveries whose backoff elapsed (each claimed, so sent once)."""
        result, now = FlushResult(), self.clock()
        for record in self.store.retryable(now, retry_backoff):
            claimed = self.store.claim_retry(record, now)
            if claimed is None:
                continue
            notification = self.store.notification(claimed.notification_id, claimed.channel)
            result = result.merge(self._send(claimed, notification))
        return result

    def _flush_group(
        self, group: GroupRecord, alerts: Sequence[AlertRecord], silences: Sequence[rules.Silence]
    ) -> FlushResult:
        """Claim and send the group's notification if one is due; when another invocation changed the
        group first, decide again on what it wrote."""
        for _ in range(CLAIM_ATTEMPTS):
            now = self.clock()
            plan = self.plan(group, alerts, silences, now)
            if plan is None:
                return FlushResult()
            content = Notification(
                "", group.key, group.labels, (*plan.firing, *plan.resolved), plan.reason == "repeat"
            )
            channels = self._channels(group, plan)
            claimed = self.store.claim_group(
                group,
                notified=plan.notified,
                still_firing=plan.still_firing,
                notification=content,
                channels=[c.name for c in channels],
                now=now,
            )
            if claimed is not None:
                return self._send_all(claimed, content, channels)
            fresh = self.store.group(group.key)
            if fresh is None:
                break
            group, alerts = fresh, self.store.alerts()
        return FlushResult()

    def _channels(self, group: GroupRecord, plan: Plan) -> list[AlertChannel]:
        """The group's channels that want this notification: a resolved-only one goes to those that send
        resolved notifications. Channels no longer configured are skipped."""
        known = {c.name: c for c in self.settings.alerts.channels}
        chosen = [known[name] for name in group.channels if name in known]
        return [c for c in chosen if plan.firing or c.send_resolved]

    def _send_all(
        self, claimed: Sequence[DeliveryRecord], content: Notification, channels: Sequence[AlertChannel]
    ) -> FlushResult:
        result = FlushResult()
        by_name = {c.name: c for c in channels}
        for record in claimed:
            channel = by_name[record.channel]
            alerts = (
                content.alerts
                if channel.send_resolved
                else tuple(a for a in content.alerts if a.status == "firing")
            )
            result = result.merge(self._send(record, replace(content, channel=channel.name, alerts=alerts)))
        return result

    def _send(self, claimed: DeliveryRecord, notification: Notification) -> FlushResult:
        """Deliver a claimed notification to its channel and keep the outcome (a deliverer that raises
        counts as a failed delivery: the claim must not stay open)."""
        try:
            channel = self.settings.alerts.channel(claimed.channel)
            outcome = self.deliver(channel, notification)
        except Exception as exc:
            outcome = DeliveryResult(
                claimed.channel, ok=False, attempts=1, error=f"{type(exc).__name__}: {exc}"
            )
        record = self.store.record_delivery(claimed, outcome, retry_limit=self.retry_limit, now=self.clock())
        if outcome.ok:
            return FlushResult(sent=[record], notifications=[notification])
        return FlushResult(failed=[record], notifications=[notification])

    # -- the timers --------------------------------------------------------------------------------

    def plan(
        self,
        group: GroupRecord,
        alerts: Sequence[AlertRecord],
        silences: Sequence[rules.Silence],
        now: datetime,
    ) -> Plan | None:
        """Whether the group notifies now, and with what (None: nothing due). Alertmanager's rules: the
        first notification waits ``group_wait`` from the group's first alert; a new firing alert or a
        resolved one goes out once ``group_interval`` passed since the last notification; an unchanged
        group still firing repeats after ``repeat_interval`` unless all its alerts are acknowledged."""
        members = [r for r in alerts if r.fingerprint in group.members]
        firing, muted = self._firing(members, alerts, silences, now)
        told = group.notified_firing
        resolved = [r.alert for r in members if r.alert.status == "resolved" and r.fingerprint in told]
        active = {a.fingerprint for a in firing}
        reason = self._reason(group, active, bool(resolved), members, now)
        if reason is None:
            return None
        notified = dict.fromkeys(active, "firing") | {a.fingerprint: "resolved" for a in resolved}
        ordered = tuple(sorted(firing, key=lambda a: a.starts_at))
        return Plan(reason, ordered, tuple(resolved), notified, bool(firing or muted))

    def _reason(
        self,
        group: GroupRecord,
        active: set[str],
        resolved: bool,
        members: Sequence[AlertRecord],
        now: datetime,
    ) -> Reason | None:
        grouping = self.settings.alerts.grouping
        told = group.notified_firing
        if not told:
            if not active:
                return None
            waited = group.first_seen is None or now >= group.first_seen + timedelta(
                seconds=grouping.group_wait_seconds
            )
            return "first" if waited else None
        last = group.last_notified or now
        if active - told or resolved:
            return "update" if now >= last + timedelta(seconds=grouping.group_interval_seconds) else None
        unacked = any(r.fingerprint in active and not r.acked for r in members)
        if active and unacked and now >= last + timedelta(seconds=grouping.repeat_interval_seconds):
            return "repeat"
        return None

    def _firing(
        self,
        members: Sequence[AlertRecord],
        alerts: Sequence[AlertRecord],
        silences: Sequence[rules.Silence],
        now: datetime,
    ) -> tuple[list[Alert], list[Alert]]:
        """The group's firing alerts, split into those to notify and those silenced or inhibited (an
        alert firing anywhere may inhibit, even a muted one, as in Alertmanager)."""
        sources = [r.alert for r in alerts if r.alert.status == "firing"]
        inhibit = self.settings.alerts.inhibit
        loud: list[Alert] = []
        muted: list[Alert] = []
        for record in members:
            alert = record.alert
            if alert.status != "firing":
                continue
            quiet = rules.silenced(alert.labels, silences, now) or rules.inhibited(alert, sources, inhibit)
            (muted if quiet else loud).append(alert)
        return loud, muted
