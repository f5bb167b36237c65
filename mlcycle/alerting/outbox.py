"""The router's outbox: notification groups, the notifications claimed for them, and each channel's
delivery (see :mod:`mlcycle.alerting.state` for the table's items).

A notification is claimed in one transaction that moves its group's version (read before deciding) and
creates its deliveries: of two flushes that decided the same notification, one claims it, the other
reads the group again and finds nothing left to send. A delivery moves ``sending`` -> ``sent`` /
``failed`` / ``given_up`` by conditional writes on its state and try count, so a failed one is retried by
exactly one later flush.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from mlcycle.alerting import records
from mlcycle.alerting.model import DeliveryResult, Notification
from mlcycle.alerting.records import DeliveryRecord, GroupRecord, epoch, n, s, stamp
from mlcycle.alerting.table import Table, key
from mlcycle.aws import lost_race

#: Notifications, deliveries and quiet groups stay this long (TTL).
HISTORY_TTL = timedelta(days=30)
#: A delivery claimed by an invocation that never recorded its outcome (it died) is retried after this.
DELIVERY_LEASE = timedelta(minutes=15)
ERROR_CHARS = 2000


class Outbox(Table):
    # -- groups ------------------------------------------------------------------------------------

    def join_group(
        self,
        group: str,
        labels: Mapping[str, str],
        channels: Sequence[str],
        fingerprint: str,
        *,
        firing: bool,
        now: datetime | None = None,
        unless_member: bool = False,
    ) -> bool:
        """Add an alert to a group (creating it); a firing one starts the group's wait unless one runs.
        The version moves, so a flush that read the group before reads it again. ``unless_member``: leave
        the group alone (False) when the alert is in it already (an alert that still fires changes no
        group, so an alert storm does not hold the flushes off)."""
        sets = ["group_labels = :labels", "channels = :channels"]
        values = {
            ":labels": s(json.dumps(dict(labels), sort_keys=True)),
            ":channels": {"L": [s(c) for c in channels]},
            ":fp": {"SS": [fingerprint]},
            ":one": n(1),
        }
        update = "ADD members :fp, version :one"
        if firing:
            sets.append("first_seen = if_not_exists(first_seen, :now)")
            values[":now"] = s(stamp(now or self.clock()))
            update += " REMOVE expires_at"
        condition = None
        if unless_member:
            condition = "attribute_not_exists(members) OR NOT contains(members, :member)"
            values[":member"] = s(fingerprint)
        return self._update(("group", group), f"SET {', '.join(sets)} {update}", condition, values)

    def groups(self, keys: Iterable[str] | None = None) -> list[GroupRecord]:
        found = [records.group_record(item) for item in self._query("group")]
        wanted = None if keys is None else set(keys)
        return [g for g in found if wanted is None or g.key in wanted]

    def group(self, group: str) -> GroupRecord | None:
        item = self._get("group", group)
        return records.group_record(item) if item else None

    def claim_group(
        self,
        group: GroupRecord,
        *,
        notified: Mapping[str, str],
        still_firing: bool,
        notification: Notification | None,
        channels: Sequence[str],
        now: datetime | None = None,
    ) -> list[DeliveryRecord] | None:
        """Claim a group's notification at the version read: record what it tells and create its
        deliveries (state ``sending``), in one transaction. None when another invocation changed the group
        first (read it again). A group with nothing firing forgets its wait (the next alert waits afresh)."""
        now = now or self.clock()
        nid = f"{stamp(now)}-{uuid.uuid4().hex[:8]}"
        items: list[Any] = [self._group_claim(group, notified, still_firing, now)]
        deliveries = []
        if notification is not None and channels:
            items.append(self._new(key("notification", nid) | _notification_item(notification, now)))
            for channel in channels:
                record = DeliveryRecord(nid, channel, group.key, "sending", 1, 0, now)
                items.append(self._new(_delivery_item(record, now)))
                deliveries.append(record)
        try:
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException as error:
            if not lost_race(error):  # throttled, too large, invalid: a retry of the event may succeed
                raise
            return None
        return deliveries

    def _group_claim(
        self, group: GroupRecord, notified: Mapping[str, str], still_firing: bool, now: datetime
    ) -> dict[str, Any]:
        update = "SET version = :next, last_notified = :now, notified = :notified"
        values = {
            ":v": n(group.version),
            ":next": n(group.version + 1),
            ":now": s(stamp(now)),
            ":notified": s(json.dumps(dict(notified), sort_keys=True)),
        }
        if not still_firing:
            update += ", expires_at = :ttl REMOVE first_seen"
            values[":ttl"] = {"N": epoch(now + HISTORY_TTL)}
        return {
            "Update": {
                "TableName": self.table,
                "Key": key("group", group.key),
                "UpdateExpression": update,
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": values,
            }
        }

    # -- deliveries --------------------------------------------------------------------------------

    def notification(self, notification_id: str, channel: str) -> Notification:
        """A claimed notification's content, as its channel is sent it (again, on a retry)."""
        item = self._get("notification", notification_id)
        if item is None:
            raise KeyError(f"no notification {notification_id}")
        return records.notification_from_body(item["body"]["S"], channel)

    def record_delivery(
        self,
        claimed: DeliveryRecord,
        result: DeliveryResult,
        *,
        retry_limit: int,
        now: datetime | None = None,
    ) -> DeliveryRecord:
        """Keep how a claimed delivery went: ``sent``, ``failed`` (retried later) or ``given_up``."""
        now = now or self.clock()
        state: records.DeliveryState = "sent" if result.ok else "failed"
        if not result.ok and claimed.tries >= retry_limit:
            state = "given_up"
        values: dict[str, Any] = {
            ":sending": s("sending"),
            ":tries": n(claimed.tries),
            ":state": s(state),
            ":attempts": n(result.attempts),
            ":now": s(stamp(now)),
        }
        sets = ["#state = :state", "updated_at = :now"]
        if result.status is not None:
            sets.append("http_status = :status")
            values[":status"] = n(result.status)
        if result.error:
            sets.append("error_text = :error")
            values[":error"] = s(result.error[:ERROR_CHARS])
        update = f"SET {', '.join(sets)} ADD attempts :attempts"
        condition = "#state = :sending AND tries = :tries"
        item = ("delivery", f"{claimed.notification_id}#{claimed.channel}")
        self._update(item, update, condition, values, {"#state": "state"})
        return replace(
            claimed,
            state=state,
            attempts=claimed.attempts + result.attempts,
            updated_at=now,
            status=result.status,
            error=result.error,
        )

    def deliveries(self) -> list[DeliveryRecord]:
        """Every delivery kept, newest first."""
        found = [records.delivery_record(item) for item in self._query("delivery")]
        return sorted(found, key=lambda d: d.notification_id, reverse=True)

    def failed_deliveries(self) -> list[DeliveryRecord]:
        """Deliveries that failed: those still to be retried (``failed``) and those given up."""
        return [d for d in self.deliveries() if d.state in ("failed", "given_up")]

    def retryable(self, now: datetime, backoff: Callable[[int], timedelta]) -> list[DeliveryRecord]:
        """Failed deliveries whose backoff elapsed, and claims abandoned (their invocation died)."""
        due = []
        for record in self.deliveries():
            failed = record.state == "failed" and now >= record.updated_at + backoff(record.tries)
            abandoned = record.state == "sending" and now >= record.updated_at + DELIVERY_LEASE
            if failed or abandoned:
                due.append(record)
        return due

    def claim_retry(self, record: DeliveryRecord, now: datetime | None = None) -> DeliveryRecord | None:
        """Take a delivery for one more try; None when another flush took it first."""
        now = now or self.clock()
        values = {":old": s(record.state), ":tries": n(record.tries), ":next": n(record.tries + 1)}
        values |= {":sending": s("sending"), ":now": s(stamp(now))}
        update = "SET #state = :sending, tries = :next, updated_at = :now, claimed_at = :now"
        item = ("delivery", f"{record.notification_id}#{record.channel}")
        condition = "#state = :old AND tries = :tries"
        if not self._update(item, update, condition, values, {"#state": "state"}):
            return None
        return replace(record, state="sending", tries=record.tries + 1, updated_at=now)


def _notification_item(notification: Notification, now: datetime) -> dict[str, Any]:
    return {
        "body": s(records.notification_body(notification)),
        "group_key": s(notification.group_key),
        "created_at": s(stamp(now)),
        "expires_at": {"N": epoch(now + HISTORY_TTL)},
    }


def _delivery_item(record: DeliveryRecord, now: datetime) -> dict[str, Any]:
    return key("delivery", f"{record.notification_id}#{record.channel}") | {
        "notification_id": s(record.notification_id),
        "channel": s(record.channel),
        "group_key": s(record.group_key),
        "state": s(record.state),
        "tries": n(record.tries),
        "attempts": n(record.attempts),
        "updated_at": s(stamp(now)),
        "claimed_at": s(stamp(now)),
        "expires_at": {"N": epoch(now + HISTORY_TTL)},
    }
