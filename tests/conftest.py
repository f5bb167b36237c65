"""Fixtures shared by every level of the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from mlcycle.application.settings import example_settings
from mlcycle.config import Settings

REGION = "us-east-1"

# No test may reach a real AWS account, whatever the developer's shell exports.
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "mlcycle-tests",
        "CDK_VALIDATION": "false",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return example_settings()


@pytest.fixture(autouse=True)
def function_settings(settings: Settings) -> Iterator[None]:
    """Handlers called directly read the example's settings, as if the CDK app had bundled them."""
    from mlcycle import runtime

    with runtime.supplied_settings(settings):
        yield


@pytest.fixture
def moto_aws() -> Iterator[None]:
    """In-process moto for functional tests of one handler or adapter."""
    from moto import mock_aws

    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        yield


@pytest.fixture
def s3(moto_aws: None) -> Any:
    return boto3.client("s3", region_name=REGION)


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


#: Tests that start an embedded AWS (moto in server mode, in this process).
_EMBEDDED = ("tests/e2e/", "tests/functional/local/", "tests/functional/test_query.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that start an embedded AWS last, in their own order. Once moto has run in server mode
    in a process, every in-process ``mock_aws`` start and stop resets the many backends the server loaded
    (about 1.2 s a test instead of milliseconds: measured), so the in-process tests go first."""
    embedded = [item for item in items if item.nodeid.startswith(_EMBEDDED)]
    rest = [item for item in items if not item.nodeid.startswith(_EMBEDDED)]
    items[:] = rest + embedded
