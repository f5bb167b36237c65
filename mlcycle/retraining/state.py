"""The retraining controller's state in DynamoDB, changed only by conditional writes.

One table, ``pk``/``sk`` strings, TTL attribute ``expires_at`` (epoch seconds):

================  ============  ==========================  =============================================
item              pk            sk                          holds
================  ============  ==========================  =============================================
state             ``STATE``     ``STATE``                   ``version``, ``new_rows``, ``runs_day``,
                                                            ``runs_count``, the last run (``last_run``
                                                            JSON, ``last_run_name``, ``..._published``)
lock              ``LOCK``      ``LOCK``                    the run in flight: ``execution_name``,
                                                            ``execution_arn``, ``acquired_at``, ``until``
pending trigger   ``PENDING``   ``{kind}#{endpoint}``       a finding waiting for new labelled rows
counted upload    ``SEEN``      ``{event id}``              a DatasetValidated whose rows were counted
deferral mark     ``DEFERRED``  ``{run}#{trigger}#{guard}`` a RetrainingDeferred already published
decision          ``DECISION``  ``{time}#{event id}``       one decision, as JSON (``body``)
================  ============  ==========================  =============================================

Why this shape: every start goes through one item (``STATE``) whose ``version`` each change bumps, so of
any number of concurrent invocations exactly one can claim a run (the others' conditional writes fail and
they decide again on what the winner wrote); the lock item is claimed in the same transaction, with its
own condition, so single flight holds even against a state item restored by hand. Counting an upload's
rows puts its ``SEEN`` item in the same transaction, so a redelivered event counts nothing.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from mlcycle.aws import lost_race
from mlcycle.config import RetrainingSettings, Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_stepfunctions import SFNClient

STATE, LOCK, PENDING, SEEN, DEFERRED, DECISION = "STATE", "LOCK", "PENDING", "SEEN", "DEFERRED", "DECISION"
#: How long the bookkeeping items live (DynamoDB TTL): past any redelivery, and a quarter of decisions.
SEEN_DAYS, DEFERRED_DAYS, DECISION_DAYS = 90, 30, 90
#: Conditional writes that lost to a concurrent one are decided again this many times at most.
ATTEMPTS = 12


class ContentionError(RuntimeError):
    """Concurrent invocations kept winning every write: the event fails and is delivered again."""


def backoff(attempt: int) -> None:
    """A short, jittered pause before trying a lost write again, so a storm's losers spread out."""
    time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 5)))


def iso(moment: datetime) -> str:
    """One text form for every time we store: UTC, to the second (so stored times compare as strings)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


Guard = Literal["single_flight", "cooldown", "budget", "new_rows"]


@dataclass(frozen=True)
class Refusal:
    """A guard's no: which guard, why, and when the trigger may succeed (when known)."""

    guard: Guard
    reason: str
    retry_after: datetime | None = None


@dataclass(frozen=True)
class Lock:
    """The run in flight (single flight): held until its execution ends, or ``until`` at most."""

    execution_name: str
    execution_arn: str
    acquired_at: datetime
    until: datetime


@dataclass(frozen=True)
class Run:
    """A run the controller claimed: what started it (``decided_by``: the deciding event's id)."""

    execution_name: str
    execution_arn: str
    started_at: datetime
    decided_by: str
    trigger: dict[str, Any]
    reason: str
    published: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"started_at": iso(self.started_at)}


@dataclass(frozen=True)
class Pending:
    """A finding that asked for a run and waits for enough new labelled rows."""

    kind: str
    endpoint: str
    since: datetime
    event: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """Everything a decision reads, as of one moment; ``version`` is what a claim is conditioned on."""

    version: int = 0
    new_rows: int = 0
    runs_day: str = ""
    runs_count: int = 0
    last_run: Run | None = None
    lock: Lock | None = None
    pending: list[Pending] = field(default_factory=list)

    def runs_on(self, day: str) -> int:
        return self.runs_count if self.runs_day == day else 0


@dataclass(frozen=True)
class Claim:
    """A run about to start: the lock it takes and the state it leaves."""

    run: Run
    lock: Lock
    #: The lock seen held by an execution that no longer runs: the claim may replace exactly that one.
    stale_lock: str | None = None


class RetrainingState:
    """Reads and conditionally writes the controller's table (see the module's docstring)."""

    def __init__(self, table: str, client: DynamoDBClient) -> None:
        self.table, self.client = table, client

    # -- reading -----------------------------------------------------------------------------------

    def read(self, *, trained_since: datetime | None = None) -> Snapshot:
        """The state now. ``trained_since``: when the newest training run started, whoever started it
        (a run started by hand or before the controller existed also used the rows that came before it):
        when it is later than the controller's own last run, only the rows counted after it are new."""
        state = self._get(STATE, STATE) or {}
        lock = self._get(LOCK, LOCK)
        last = state.get("last_run", {}).get("S")
        last_run = (
            _run(json.loads(last), state.get("last_run_published", {}).get("BOOL", False)) if last else None
        )
        new_rows = int(state.get("new_rows", {}).get("N", "0"))
        if trained_since is not None and (last_run is None or last_run.started_at < trained_since):
            new_rows = self.rows_counted_after(trained_since)
        return Snapshot(
            version=int(state.get("version", {}).get("N", "0")),
            new_rows=new_rows,
            runs_day=state.get("runs_day", {}).get("S", ""),
            runs_count=int(state.get("runs_count", {}).get("N", "0")),
            last_run=last_run,
            lock=_lock(lock) if lock else None,
            pending=self.pending(),
        )

    def rows_counted_after(self, moment: datetime) -> int:
        """The rows of the uploads counted after ``moment`` (their ``SEEN`` records)."""
        return sum(
            int(item.get("rows", {}).get("N", "0"))
            for item in self._query(SEEN)
            if parse_time(item["at"]["S"]) > moment
        )

    def pending(self) -> list[Pending]:
        """The waiting findings, oldest first."""
        found = [
            Pending(
                kind=item["kind"]["S"],
                endpoint=item["endpoint"]["S"],
                since=parse_time(item["since"]["S"]),
                event=json.loads(item["event"]["S"]),
            )
            for item in self._query(PENDING)
        ]
        return sorted(found, key=lambda p: (p.since, p.kind, p.endpoint))

    def decisions(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest decisions, newest first."""
        found = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": DECISION}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [json.loads(item["body"]["S"]) for item in found.get("Items", [])]

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.client.get_item(
            TableName=self.table, Key=_key(pk, sk), ConsistentRead=True
        ).get("Item")
        return item

    def _query(self, pk: str) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=True,
        )
        return [item for page in pages for item in page.get("Items", [])]

    # -- writing -----------------------------------------------------------------------------------

    def count_rows(self, event_id: str, rows: int, now: datetime) -> bool:
        """Add an upload's rows to the count since the last run; False when this event was counted before.

        A transaction that conflicts with a concurrent one (DynamoDB cancels either) is tried again.
        """
        seen = {"pk": {"S": SEEN}, "sk": {"S": event_id}, "rows": {"N": str(rows)}}
        seen |= {"at": {"S": iso(now)}, "expires_at": _ttl(now, SEEN_DAYS)}
        for attempt in range(ATTEMPTS):
            try:
                self._count(seen, rows)
            except self.client.exceptions.TransactionCanceledException as error:
                if not lost_race(error):
                    raise
                if self._get(SEEN, event_id) is not None:
                    return False
                backoff(attempt)
                continue
            return True
        raise ContentionError(f"could not count the rows of {event_id} in {ATTEMPTS} attempts")

    def _count(self, seen: dict[str, Any], rows: int) -> None:
        self.client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": seen,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _key(STATE, STATE),
                        "UpdateExpression": "ADD new_rows :rows, version :one",
                        "ExpressionAttributeValues": {":rows": {"N": str(rows)}, ":one": {"N": "1"}},
                    }
                },
            ]
        )

    def claim(self, snapshot: Snapshot, claim: Claim) -> bool:
        """Take the lock and record the run, rows and budget at once; the waiting findings are answered.

        False (nothing written) when anything changed since ``snapshot`` or the lock is held: decide again.
        """
        run, lock = claim.run, claim.lock
        day = run.started_at.astimezone(UTC).date().isoformat()
        values: dict[str, Any] = {
            ":run": {"S": json.dumps(run.as_dict(), default=str)},
            ":name": {"S": run.execution_name},
            ":false": {"BOOL": False},
            ":day": {"S": day},
            ":count": {"N": str(snapshot.runs_on(day) + 1)},
            ":zero": {"N": "0"},
            ":next": {"N": str(snapshot.version + 1)},
        }
        state_condition = "attribute_not_exists(version)"
        if snapshot.version:
            state_condition, values[":version"] = "version = :version", {"N": str(snapshot.version)}
        items: list[Any] = [
            {"Put": self._lock_put(lock, claim.stale_lock)},
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _key(STATE, STATE),
                    "UpdateExpression": "SET last_run = :run, last_run_name = :name, "
                    "last_run_published = :false, runs_day = :day, runs_count = :count, "
                    "new_rows = :zero, version = :next",
                    "ConditionExpression": state_condition,
                    "ExpressionAttributeValues": values,
                }
            },
        ]
        items += [
            {"Delete": {"TableName": self.table, "Key": _key(PENDING, f"{p.kind}#{p.endpoint}")}}
            for p in snapshot.pending
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException as error:
            if not lost_race(error):
                raise
            return False
        return True

    def _lock_put(self, lock: Lock, stale: str | None) -> dict[str, Any]:
        condition = "attribute_not_exists(pk) OR #until <= :now"
        values = {":now": {"S": iso(lock.acquired_at)}}
        if stale:
            condition += " OR #name = :stale"
            values[":stale"] = {"S": stale}
        return {
            "TableName": self.table,
            "Item": _key(LOCK, LOCK)
            | {
                "execution_name": {"S": lock.execution_name},
                "execution_arn": {"S": lock.execution_arn},
                "acquired_at": {"S": iso(lock.acquired_at)},
                "until": {"S": iso(lock.until)},
                "expires_at": _ttl(lock.until, 1),
            },
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#until": "until", **({"#name": "execution_name"} if stale else {})},
            "ExpressionAttributeValues": values,
        }

    def mark_published(self, execution_name: str) -> None:
        """The run's RetrainingStarted went out: a redelivered deciding event must not send it again."""
        # A later run claimed meanwhile fails the condition: this one's flag no longer matters.
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table,
                Key=_key(STATE, STATE),
                UpdateExpression="SET last_run_published = :true",
                ConditionExpression="last_run_name = :name",
                ExpressionAttributeValues={":true": {"BOOL": True}, ":name": {"S": execution_name}},
            )

    def keep_pending(self, kind: str, endpoint: str, event: dict[str, Any], now: datetime) -> None:
        """Keep a finding waiting for rows: its newest event, since its first."""
        self.client.update_item(
            TableName=self.table,
            Key=_key(PENDING, f"{kind}#{endpoint}"),
            UpdateExpression="SET kind = :kind, endpoint = :endpoint, event = :event, updated_at = :now, "
            "since = if_not_exists(since, :now)",
            ExpressionAttributeValues={
                ":kind": {"S": kind},
                ":endpoint": {"S": endpoint},
                ":event": {"S": json.dumps(event, default=str)},
                ":now": {"S": iso(now)},
            },
        )

    def clear_pending(self, kind: str, endpoint: str) -> bool:
        """Withdraw a waiting finding; True when one was waiting."""
        old = self.client.delete_item(
            TableName=self.table, Key=_key(PENDING, f"{kind}#{endpoint}"), ReturnValues="ALL_OLD"
        )
        return "Attributes" in old

    def mark_deferred(self, epoch: str, trigger: str, guard: str, now: datetime) -> bool:
        """True for the first deferral of ``trigger`` by ``guard`` since the run ``epoch`` started: only
        then is the deferral news (a storm of the same trigger publishes it once)."""
        item = _key(DEFERRED, f"{epoch}#{trigger}#{guard}") | {
            "at": {"S": iso(now)},
            "expires_at": _ttl(now, DEFERRED_DAYS),
        }
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def record_decision(self, decision: dict[str, Any], now: datetime) -> None:
        item = _key(DECISION, f"{iso(now)}#{decision.get('event_id', '')}") | {
            "body": {"S": json.dumps(decision, default=str)},
            "expires_at": _ttl(now, DECISION_DAYS),
        }
        self.client.put_item(TableName=self.table, Item=item)


# -- the guards that read only the state (single flight also asks Step Functions: the controller's) ------


def cooldown(snapshot: Snapshot, policy: RetrainingSettings, now: datetime) -> Refusal | None:
    """No run within ``cooldown_minutes`` of the last start: a flapping finding waits it out."""
    last = snapshot.last_run
    if last is None:
        return None
    until = last.started_at + timedelta(minutes=policy.cooldown_minutes)
    if now >= until:
        return None
    reason = (
        f"cooldown: the last run ({last.execution_name}) started at {iso(last.started_at)}; "
        f"none may start before {iso(until)}"
    )
    return Refusal("cooldown", reason, until)


def budget(snapshot: Snapshot, policy: RetrainingSettings, now: datetime) -> Refusal | None:
    """At most ``max_runs_per_day`` starts per UTC day, whatever triggers them: a bound on the bill."""
    today = now.astimezone(UTC).date()
    runs = snapshot.runs_on(today.isoformat())
    if runs < policy.max_runs_per_day:
        return None
    tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    reason = (
        f"daily budget: {runs} of {policy.max_runs_per_day} runs started today (UTC); "
        f"the next may start at {iso(tomorrow)}"
    )
    return Refusal("budget", reason, tomorrow)


def new_rows(snapshot: Snapshot, policy: RetrainingSettings) -> Refusal | None:
    """A retraining on the same data would learn nothing new: wait for enough labelled rows."""
    need = policy.min_new_labelled_rows
    if snapshot.new_rows >= need:
        return None
    reason = f"new labelled rows: {snapshot.new_rows} since the last run started, {need} needed"
    return Refusal("new_rows", reason)


# -- ``mlcycle retraining status`` -------------------------------------------------------------------


def status(
    settings: Settings,
    *,
    dynamodb: DynamoDBClient,
    table: str,
    stepfunctions: SFNClient | None = None,
    decisions: int = 10,
    now: datetime | None = None,
    trained_since: datetime | None = None,
) -> dict[str, Any]:
    """The lock (with its execution's status when a Step Functions client is given), the last run and
    its cooldown, the runs today against the budget, the new rows against the minimum (counted from
    ``trained_since``, as the controller does), the waiting findings and the latest decisions (newest
    first)."""
    state = RetrainingState(table, dynamodb)
    snapshot, policy = state.read(trained_since=trained_since), settings.retraining
    now = now or datetime.now(UTC)
    last = snapshot.last_run
    return {
        "lock": _lock_view(snapshot.lock, now, stepfunctions),
        "last_run": last.as_dict() if last else None,
        "cooldown_until": iso(last.started_at + timedelta(minutes=policy.cooldown_minutes)) if last else None,
        "runs_today": snapshot.runs_on(now.astimezone(UTC).date().isoformat()),
        "max_runs_per_day": policy.max_runs_per_day,
        "new_rows": snapshot.new_rows,
        "min_new_labelled_rows": policy.min_new_labelled_rows,
        "pending": [
            {
                "type": p.kind,
                "endpoint": p.endpoint,
                "since": iso(p.since),
                "event_id": p.event.get("id"),
                "report_uri": (p.event.get("detail") or {}).get("report_uri"),
            }
            for p in snapshot.pending
        ],
        "decisions": state.decisions(decisions),
    }


def _lock_view(lock: Lock | None, now: datetime, stepfunctions: SFNClient | None) -> dict[str, Any] | None:
    if lock is None:
        return None
    view: dict[str, Any] = {
        "execution_name": lock.execution_name,
        "execution_arn": lock.execution_arn,
        "acquired_at": iso(lock.acquired_at),
        "until": iso(lock.until),
        "expired": lock.until <= now,
        "execution_status": None,
    }
    if stepfunctions is not None:
        try:
            view["execution_status"] = stepfunctions.describe_execution(executionArn=lock.execution_arn)[
                "status"
            ]
        except stepfunctions.exceptions.ExecutionDoesNotExist:
            view["execution_status"] = "NOT_STARTED"
    return view


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _ttl(moment: datetime, days: int) -> dict[str, str]:
    return {"N": str(int((moment + timedelta(days=days)).timestamp()))}


def _run(body: dict[str, Any], published: bool) -> Run:
    return Run(
        execution_name=body["execution_name"],
        execution_arn=body["execution_arn"],
        started_at=parse_time(body["started_at"]),
        decided_by=body["decided_by"],
        trigger=body["trigger"],
        reason=body["reason"],
        published=published,
    )


def _lock(item: dict[str, Any]) -> Lock:
    return Lock(
        execution_name=item["execution_name"]["S"],
        execution_arn=item["execution_arn"]["S"],
        acquired_at=parse_time(item["acquired_at"]["S"]),
        until=parse_time(item["until"]["S"]),
    )
