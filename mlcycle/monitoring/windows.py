"""Monitor windows counted exactly once: a checkpoint per endpoint in DynamoDB, and the debounce.

A window is the capture that *arrived* (S3 ``LastModified``) since the previous window: the checkpoint
holds the newest arrival time consumed and the keys consumed at that very second, so a capture file that
arrives late (its hour prefix already past) counts in the next window, and none counts twice. A window's
result, the checkpoint's advance and the debounce state are written in one DynamoDB transaction, the
checkpoint conditioned on its version: of two runs of the same window only one commits, and a re-run of
a committed window (a retried schedule event) returns the stored result instead of counting again.

The debounce: a finding opens (an event) when ``windows_breached`` of the last ``windows`` windows
breached, and closes (its ``...Recovered``) when fewer do; windows without a verdict
(``insufficient_data``) leave the history as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlcycle.aws import lost_race
from mlcycle.config import Debounce

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

CHECKPOINT = "checkpoint"
WINDOW = "window#"
FINDING = "finding#"
_EPOCH = "1970-01-01T00:00:00+00:00"


@dataclass
class Checkpoint:
    mark: str = _EPOCH  # ISO time of the newest capture object consumed
    keys: list[str] = field(default_factory=list)  # the keys consumed whose LastModified is ``mark``
    version: int = 0

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.mark)


@dataclass(frozen=True)
class CaptureObject:
    bucket: str
    key: str
    modified: datetime


@dataclass
class Finding:
    """One kind of finding's debounce state: the last verdicts (newest last) and whether it is open."""

    kind: str
    history: list[bool] = field(default_factory=list)
    open: bool = False

    def update(self, breached: bool | None, debounce: Debounce) -> str | None:
        """Add this window's verdict; ``"opened"``, ``"recovered"`` or None (no change)."""
        if breached is None:
            return None
        self.history = [*self.history, breached][-debounce.windows :]
        return self._decide(debounce)

    def rejudge(self, verdicts: Sequence[bool | None], debounce: Debounce) -> str | None:
        """Replace the history with the latest windows' verdicts as judged now (oldest first): a window
        whose labels arrived late counts with its new verdict."""
        judged = [v for v in verdicts if v is not None]
        if not judged:
            return None
        self.history = judged[-debounce.windows :]
        return self._decide(debounce)

    def _decide(self, debounce: Debounce) -> str | None:
        breaching = sum(self.history) >= debounce.windows_breached
        if breaching and not self.open:
            self.open = True
            return "opened"
        if self.open and not breaching:
            self.open = False
            return "recovered"
        return None


class MonitorState:
    """The state table: partition key ``pk`` (the endpoint), sort key ``sk`` (checkpoint, window#ID,
    finding#KIND); each item's ``body`` is JSON and ``version`` its write count."""

    def __init__(self, table: str, client: DynamoDBClient) -> None:
        self.table, self.client = table, client

    def _get(self, endpoint: str, item: str) -> dict[str, Any] | None:
        found = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": endpoint}, "sk": {"S": item}},
            ConsistentRead=True,
        ).get("Item")
        return json.loads(found["body"]["S"]) | {"_version": int(found["version"]["N"])} if found else None

    def window(self, endpoint: str, window_id: str) -> dict[str, Any] | None:
        return self._get(endpoint, WINDOW + window_id)

    def checkpoint(self, endpoint: str) -> Checkpoint:
        found = self._get(endpoint, CHECKPOINT)
        if found is None:
            return Checkpoint()
        return Checkpoint(found["mark"], list(found["keys"]), found["_version"])

    def finding(self, endpoint: str, kind: str) -> Finding:
        found = self._get(endpoint, FINDING + kind)
        return Finding(kind, list(found["history"]), bool(found["open"])) if found else Finding(kind)

    def windows(self, endpoint: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest committed windows, newest first."""
        found = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :e AND begins_with(sk, :w)",
            ExpressionAttributeValues={":e": {"S": endpoint}, ":w": {"S": WINDOW}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [json.loads(item["body"]["S"]) for item in found.get("Items", [])]

    def commit(
        self,
        endpoint: str,
        window_id: str,
        result: dict[str, Any],
        *,
        checkpoint: Checkpoint,
        advanced: Checkpoint,
        findings: Sequence[Finding],
    ) -> bool:
        """Write the window, advance the checkpoint and the findings at once; False when another run of
        this window, or a later window, committed first (nothing is then written)."""
        condition = "attribute_not_exists(#v)" if checkpoint.version == 0 else "#v = :old"
        values = {":old": {"N": str(checkpoint.version)}} if checkpoint.version else {}
        items: list[Any] = [
            self._put(endpoint, WINDOW + window_id, result, 1, "attribute_not_exists(pk)"),
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._item(
                        endpoint,
                        CHECKPOINT,
                        {"mark": advanced.mark, "keys": advanced.keys},
                        checkpoint.version + 1,
                    ),
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#v": "version"},
                    **({"ExpressionAttributeValues": values} if values else {}),
                }
            },
        ]
        items += [
            self._put(endpoint, FINDING + f.kind, {"history": f.history, "open": f.open}, 1, None)
            for f in findings
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException as error:
            if not lost_race(error):
                raise
            return False
        return True

    def put_window(self, endpoint: str, window_id: str, record: dict[str, Any]) -> None:
        """Rewrite a committed window's record (late labels re-judged it; nothing is counted again)."""
        self.client.put_item(TableName=self.table, Item=self._item(endpoint, WINDOW + window_id, record, 1))

    def mark_published(self, endpoint: str, window_id: str, result: dict[str, Any]) -> None:
        self.client.put_item(
            TableName=self.table,
            Item=self._item(endpoint, WINDOW + window_id, result | {"published": True}, 1),
        )

    def _item(self, endpoint: str, item: str, body: dict[str, Any], version: int) -> dict[str, Any]:
        return {
            "pk": {"S": endpoint},
            "sk": {"S": item},
            "body": {"S": json.dumps(body, default=str, allow_nan=False)},
            "version": {"N": str(version)},
        }

    def _put(
        self, endpoint: str, item: str, body: dict[str, Any], version: int, condition: str | None
    ) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self.table, "Item": self._item(endpoint, item, body, version)}
        if condition:
            put["ConditionExpression"] = condition
        return {"Put": put}


def arrived_since(s3: S3Client, bucket: str, prefix: str, checkpoint: Checkpoint) -> list[CaptureObject]:
    """Capture objects under ``prefix`` that arrived after the checkpoint, oldest first. Only the hour
    prefixes from a day before the mark on are listed (capture keys start ``yyyy/mm/dd/hh``)."""
    found = [
        CaptureObject(bucket, obj["Key"], obj["LastModified"].astimezone(UTC))
        for day_prefix in _day_prefixes(prefix, checkpoint)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=day_prefix)
        for obj in page.get("Contents", [])
    ]
    mark, seen = checkpoint.moment, set(checkpoint.keys)
    new = [o for o in found if o.modified > mark or (o.modified == mark and o.key not in seen)]
    return sorted(new, key=lambda o: (o.modified, o.key))


def advance(checkpoint: Checkpoint, consumed: Sequence[CaptureObject]) -> Checkpoint:
    """The checkpoint after ``consumed`` (the keys at the newest second are kept: S3 times are seconds)."""
    if not consumed:
        return Checkpoint(checkpoint.mark, checkpoint.keys, checkpoint.version)
    newest = max(o.modified for o in consumed)
    keys = [o.key for o in consumed if o.modified == newest]
    if newest == checkpoint.moment:
        keys = sorted({*checkpoint.keys, *keys})
    return Checkpoint(newest.isoformat(), keys, checkpoint.version)


def _day_prefixes(prefix: str, checkpoint: Checkpoint) -> Iterator[str]:
    if checkpoint.version == 0:
        yield prefix
        return
    day, today = (checkpoint.moment - timedelta(days=1)).date(), datetime.now(UTC).date()
    while day <= today:
        yield f"{prefix}{day:%Y/%m/%d}/"
        day += timedelta(days=1)
