"""The alert router's state in one DynamoDB table (keys ``pk``/``sk``, TTL attribute ``expires_at``).

Several router invocations run at once (a redelivered event, an alert storm, two scheduled flushes), so
every state transition is a conditional write: an event id is claimed once, an alert changes status
only from the status it was read in (and never back in time), a group is claimed for a notification
only at the version it was read at, and a delivery is retried only by the flush that claims it.

Items (``pk`` / ``sk``):

* ``event#<id>`` / ``event``: an event being or having been processed (TTL: a few days);
* ``alert`` / fingerprint: the alert, its notes (its thread), acknowledgement, manual resolution;
* ``group`` / group key: members, ``first_seen``, ``last_notified``, what was notified, ``version``;
* ``silence`` / id: matchers, start, end, comment, author;
* ``notification`` / id: what a group's channels were told (resent unchanged on retry);
* ``delivery`` / ``<notification id>#<channel>``: state, tries, attempts, HTTP status, error.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from mlcycle.alerting import records
from mlcycle.alerting.alerts import Note
from mlcycle.alerting.model import Alert
from mlcycle.alerting.outbox import HISTORY_TTL, Outbox
from mlcycle.alerting.records import AlertRecord, epoch, s, stamp
from mlcycle.alerting.rules import Matcher, Silence, matchers
from mlcycle.alerting.table import key

EVENT_TTL = timedelta(days=3)
#: A claimed event whose claimer never finished (it died) may be taken over after this long; Lambda's
#: first retry of an asynchronous invocation comes about a minute later.
EVENT_LEASE = timedelta(seconds=50)
#: ``get`` by fingerprint prefix needs at least this many characters.
MIN_PREFIX = 4

FireOutcome = Literal["fired", "refreshed", "stale"]


class AlertNotFoundError(KeyError):
    """No alert has this fingerprint (or prefix), or the prefix names several."""


class AlertStateError(ValueError):
    """The alert is not in a state that allows this (acknowledging a resolved alert...)."""


class AlertStore(Outbox):
    """Alerts, groups, silences and deliveries, for the router and the ``mlcycle alerts`` commands:
    ``AlertStore(table, client)`` (a DynamoDB client; ``clock`` for tests)."""

    # -- events ------------------------------------------------------------------------------------

    def claim_event(self, event_id: str, now: datetime | None = None) -> bool:
        """True when this invocation is the one to process the event (no other did, or one died)."""
        now = now or self.clock()
        item = key(f"event#{event_id}", "event") | {
            "state": s("claimed"),
            "claimed_at": s(stamp(now)),
            "expires_at": {"N": epoch(now + EVENT_TTL)},
        }
        condition = "attribute_not_exists(pk) OR (#state = :claimed AND claimed_at < :stale)"
        return self._put(item, condition, {":claimed": s("claimed"), ":stale": s(stamp(now - EVENT_LEASE))})

    def finish_event(self, event_id: str, outcome: str) -> None:
        values = {":done": s("done"), ":outcome": s(outcome)}
        item = (f"event#{event_id}", "event")
        self._update(item, "SET #state = :done, outcome = :outcome", None, values, {"#state": "state"})

    def release_event(self, event_id: str) -> None:
        """Give a claim back (processing failed), so Lambda's retry processes the event again."""
        self._delete(f"event#{event_id}", "event", "#state = :claimed", {":claimed": s("claimed")})

    # -- alerts ------------------------------------------------------------------------------------

    def fire(self, alert: Alert) -> FireOutcome:
        """Record a firing alert: ``refreshed`` when it already fires, ``fired`` when it is new or fires
        again after it resolved, ``stale`` when it resolved after this report (an old event, late)."""
        for _ in range(3):
            if self._refresh(alert):
                return "refreshed"
            if self._start(alert):
                return "fired"
        return "stale"

    def _refresh(self, alert: Alert) -> bool:
        """An alert that fires already: its latest labels, description and links (notes' links stay)."""
        names = {"#status": "status"} | {f"#l{i}": name for i, name in enumerate(alert.links)}
        values = _alert_values(alert) | {":firing": s("firing")}
        values |= {f":l{i}": s(url) for i, url in enumerate(alert.links.values())}
        sets = [f"links.#l{i} = :l{i}" for i in range(len(alert.links))]
        update = ", ".join(
            [
                "SET labels = :labels, summary = :summary, description = :description",
                "details = :details, last_event = :event, last_seen = :t",
                *sets,
            ]
        )
        return self._update(("alert", alert.fingerprint), update, "#status = :firing", values, names)

    def _start(self, alert: Alert) -> bool:
        """A new alert, or one that fires again after it resolved (its notes, its thread, stay)."""
        update = (
            "SET #status = :firing, labels = :labels, summary = :summary, description = :description, "
            "details = :details, links = :links, starts_at = :t, changed_at = :t, last_seen = :t, "
            "last_event = :event, notes = if_not_exists(notes, :empty) "
            "REMOVE ends_at, acked_by, acked_at, resolved_by, resolution, expires_at"
        )
        values = _alert_values(alert) | {
            ":firing": s("firing"),
            ":resolved": s("resolved"),
            ":links": records.string_map(alert.links),
            ":empty": {"M": {}},
        }
        condition = "attribute_not_exists(pk) OR (#status = :resolved AND changed_at <= :t)"
        return self._update(("alert", alert.fingerprint), update, condition, values, {"#status": "status"})

    def resolve_alert(
        self, fingerprint: str, at: datetime, *, event_id: str = "", by: str | None = None, why: str = ""
    ) -> bool:
        """Mark a firing alert resolved as of ``at``; False when it is unknown, already resolved, or
        changed after ``at`` (a late recovery must not resolve a newer incident)."""
        update = (
            "SET #status = :resolved, ends_at = :t, changed_at = :t, last_event = :event, "
            "resolution = :why, expires_at = :ttl"
        )
        values = {
            ":resolved": s("resolved"),
            ":firing": s("firing"),
            ":t": s(stamp(at)),
            ":event": s(event_id),
            ":why": s(why or "resolved"),
            ":ttl": {"N": epoch(at + HISTORY_TTL)},
        }
        if by:
            update += ", resolved_by = :by"
            values[":by"] = s(by)
        condition = "#status = :firing AND changed_at <= :t"
        return self._update(("alert", fingerprint), update, condition, values, {"#status": "status"})

    def add_note(self, note: Note) -> bool:
        """Add a line to an alert's thread (and its links to the alert's); False when no such alert."""
        body = {"at": stamp(note.at), "kind": note.kind, "text": note.text, **dict(note.links or {})}
        values: dict[str, Any] = {":note": s(json.dumps(body))}
        names = {"#id": note.event_id or stamp(note.at)}
        sets = ["notes.#id = :note"]
        for i, (name, url) in enumerate((note.links or {}).items()):
            sets.append(f"links.#l{i} = :l{i}")
            names[f"#l{i}"], values[f":l{i}"] = name, s(url)
        update = f"SET {', '.join(sets)}"
        return self._update(("alert", note.fingerprint), update, "attribute_exists(pk)", values, names)

    def alerts(self, fingerprints: Iterable[str] | None = None) -> list[AlertRecord]:
        """Every alert kept (or those of ``fingerprints`` that exist)."""
        found = [records.alert_record(item) for item in self._query("alert")]
        wanted = None if fingerprints is None else set(fingerprints)
        return [r for r in found if wanted is None or r.fingerprint in wanted]

    def list_alerts(self, open_only: bool = False) -> list[AlertRecord]:
        """Alerts, newest change first; ``open_only``: the firing ones."""
        found = [r for r in self.alerts() if not open_only or r.alert.status == "firing"]
        return sorted(found, key=lambda r: r.changed_at, reverse=True)

    def get(self, id: str) -> AlertRecord:
        """The alert whose fingerprint is ``id`` or starts with it (at least 4 characters, unambiguous)."""
        if len(id) < MIN_PREFIX:
            raise AlertNotFoundError(f"an alert id needs at least {MIN_PREFIX} characters: {id!r}")
        found = [records.alert_record(item) for item in self._query("alert", prefix=id)]
        if len(found) != 1:
            raise AlertNotFoundError(f"{len(found)} alerts match {id!r}" if found else f"no alert {id!r}")
        return found[0]

    def ack(self, id: str, who: str) -> AlertRecord:
        """Acknowledge a firing alert: its group stops repeating it (a new alert still notifies)."""
        record, now = self.get(id), self.clock()
        note = {"at": stamp(now), "kind": "ack", "text": f"acknowledged by {who}"}
        values = {":firing": s("firing"), ":who": s(who), ":t": s(stamp(now)), ":note": s(json.dumps(note))}
        names = {"#status": "status", "#id": f"ack-{stamp(now)}"}
        update = "SET acked_by = :who, acked_at = :t, notes.#id = :note"
        if not self._update(("alert", record.fingerprint), update, "#status = :firing", values, names):
            raise AlertStateError(f"alert {record.fingerprint[:12]} is not firing")
        return self.get(record.fingerprint)

    def resolve(self, id: str, who: str) -> AlertRecord:
        """Resolve a firing alert by hand: the next flush tells its groups' channels it resolved."""
        record, now = self.get(id), self.clock()
        if not self.resolve_alert(record.fingerprint, now, by=who, why=f"resolved by {who}"):
            raise AlertStateError(f"alert {record.fingerprint[:12]} is not firing")
        return self.get(record.fingerprint)

    # -- silences ----------------------------------------------------------------------------------

    def add_silence(
        self,
        spec: Mapping[str, str] | Iterable[Matcher | str],
        duration: timedelta,
        comment: str,
        author: str,
        starts_at: datetime | None = None,
    ) -> str:
        """Mute the alerts matching every matcher (``{"alertname": "Drift"}``, ``["endpoint=~.*-dev-.*"]``)
        for ``duration`` from ``starts_at`` (now); returns the silence's id."""
        found = matchers(spec)
        if not found:
            raise ValueError("a silence needs at least one matcher")
        now = self.clock()
        start = starts_at or now
        silence = Silence(uuid.uuid4().hex[:12], found, start, start + duration, comment, author, now)
        ttl = {"expires_at": {"N": epoch(silence.ends_at + HISTORY_TTL)}}
        self._put(key("silence", silence.id) | records.silence_item(silence) | ttl)
        return silence.id

    def silences(self, active_only: bool = True) -> list[Silence]:
        """Silences, soonest end first; ``active_only``: those muting now or later."""
        now = self.clock()
        found = [records.silence_record(item) for item in self._query("silence")]
        kept = [x for x in found if not active_only or now < x.ends_at]
        return sorted(kept, key=lambda x: x.ends_at)

    def expire_silence(self, id: str) -> Silence:
        """End a silence now (its alerts notify at the next flush if they still fire)."""
        now = s(stamp(self.clock()))
        condition = "attribute_exists(pk) AND ends_at > :now"
        if not self._update(("silence", id), "SET ends_at = :now", condition, {":now": now}):
            raise KeyError(f"no active silence {id!r}")
        item = self._get("silence", id)
        if item is None:
            raise KeyError(f"no silence {id!r}")
        return records.silence_record(item)


def _alert_values(alert: Alert) -> dict[str, Any]:
    return {
        ":labels": records.string_map(alert.labels),
        ":summary": s(alert.summary),
        ":description": s(alert.description),
        ":details": s(json.dumps(alert.details, default=str)),
        ":event": s(alert.event_id),
        ":t": s(stamp(alert.starts_at)),
    }
