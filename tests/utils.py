"""Helpers shared by every level of the suite (plain functions; the fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

REGION = "us-east-1"


def make_key_table(dynamodb: Any, name: str) -> str:
    """A pk/sk string-keyed, on-demand table: the shape of our lineage and online-store tables."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def make_bucket(s3: Any, name: str) -> str:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name
