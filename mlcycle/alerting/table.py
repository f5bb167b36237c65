"""The DynamoDB calls of the alert table (keys ``pk``/``sk``): reads are consistent, writes may carry a
condition, and a failed condition is an answer (False), not an error: it means another invocation won."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlcycle.alerting.alerts import now_utc
from mlcycle.alerting.records import s

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class Table:
    def __init__(self, table: str, client: DynamoDBClient, clock: Callable[[], datetime] = now_utc) -> None:
        self.table, self.client, self.clock = table, client, clock

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        found = self.client.get_item(TableName=self.table, Key=key(pk, sk), ConsistentRead=True)
        item: dict[str, Any] | None = found.get("Item")  # type: ignore[assignment]
        return item

    def _query(self, pk: str, prefix: str | None = None) -> list[dict[str, Any]]:
        condition = "pk = :pk" + (" AND begins_with(sk, :prefix)" if prefix else "")
        values = {":pk": s(pk)} | ({":prefix": s(prefix)} if prefix else {})
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
        )
        return [dict(item) for page in pages for item in page.get("Items", [])]

    def _put(
        self, item: dict[str, Any], condition: str | None = None, values: dict[str, Any] | None = None
    ) -> bool:
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": item}
        kwargs |= expression(condition, values, {"#state": "state"} if condition else None)
        try:
            self.client.put_item(**kwargs)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _update(
        self,
        item: tuple[str, str],
        update: str,
        condition: str | None,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        """Update the item ``(pk, sk)``; False when ``condition`` does not hold."""
        kwargs: dict[str, Any] = {"TableName": self.table, "Key": key(*item), "UpdateExpression": update}
        kwargs |= expression(condition, values, names)
        try:
            self.client.update_item(**kwargs)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _delete(self, pk: str, sk: str, condition: str, values: dict[str, Any]) -> bool:
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=key(pk, sk),
                **expression(condition, values, {"#state": "state"}),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _new(self, item: dict[str, Any]) -> dict[str, Any]:
        """A transaction's put of an item that must not exist yet."""
        return {
            "Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
        }


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": s(pk), "sk": s(sk)}


def expression(
    condition: str | None, values: dict[str, Any] | None, names: dict[str, str] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if condition:
        out["ConditionExpression"] = condition
    if values:
        out["ExpressionAttributeValues"] = values
    if names:
        out["ExpressionAttributeNames"] = names
    return out
