"""Fixtures shared by the functional tests: the feature store on in-process moto."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from mlcycle.config import Settings
from mlcycle.features import FeatureStore
from tests.functional.helpers import DATABASE
from tests.utils import REGION, make_bucket, make_key_table


@pytest.fixture
def clients(moto_aws: None) -> dict[str, Any]:
    names = ("s3", "glue", "dynamodb", "athena")
    out = {n: boto3.client(n, region_name=REGION) for n in names}  # type: ignore[call-overload]
    make_bucket(out["s3"], "features")
    make_bucket(out["s3"], "curated")
    out["glue"].create_database(DatabaseInput={"Name": DATABASE})
    make_key_table(out["dynamodb"], "online")
    return out


@pytest.fixture
def store(clients: dict[str, Any], settings: Settings) -> FeatureStore:
    fs = FeatureStore.from_settings(
        settings,
        features_bucket="features",
        online_table="online",
        glue_database=DATABASE,
        s3=clients["s3"],
        glue=clients["glue"],
        dynamodb=clients["dynamodb"],
        reader="boto3",  # Arrow's own S3 client cannot reach moto in-process
    )
    for view in fs.views:
        fs.offline.ensure_table(view, fs.contract(view))
    return fs
