"""CDK assertions on the feature store: online table, Glue tables per view, ingest function and rule."""

from __future__ import annotations

from typing import Any

from tests.infra.synthesized import Synthesized, function_by_handler


def _glue_table(synthesized: Synthesized, name: str) -> dict[str, Any]:
    tables = [
        t["Properties"]
        for t in synthesized.resources("AWS::Glue::Table").values()
        if t["Properties"]["TableInput"]["Name"] == name
    ]
    assert len(tables) == 1, f"expected one Glue table {name}"
    return tables[0]


def test_online_table_is_on_demand_encrypted_with_the_lake_key_and_recoverable(
    synthesized: Synthesized,
) -> None:
    # GIVEN the synthesized stack WHEN we look at the online table
    props = synthesized.properties(synthesized.stack.feature_store.online_table)
    # THEN pk = entity, sk = view; on demand; the data lake's KMS key; point-in-time recovery on
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEType"] == "KMS"
    key_id = synthesized.logical_id(synthesized.stack.data_lake.key)
    assert props["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_each_view_has_a_glue_table_with_its_declared_schema(synthesized: Synthesized) -> None:
    # GIVEN the default views WHEN we look at the customer_activity Glue table
    table = _glue_table(synthesized, "customer_activity")["TableInput"]
    descriptor = table["StorageDescriptor"]
    # THEN its columns are the keys, event time, features (typed) and ingestion time, partitioned by date
    assert [(c["Name"], c["Type"]) for c in descriptor["Columns"]] == [
        ("customer_id", "string"),
        ("event_time", "timestamp"),
        ("monthly_charges", "double"),
        ("support_calls", "bigint"),
        ("payment_method", "string"),
        ("ingested_at", "timestamp"),
    ]
    assert table["PartitionKeys"] == [{"Name": "event_date", "Type": "string"}]
    assert descriptor["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    # AND it lies under s3://<features bucket>/customer_activity/
    features = synthesized.logical_id(synthesized.stack.data_lake.features)
    assert descriptor["Location"] == {"Fn::Join": ["", ["s3://", {"Ref": features}, "/customer_activity/"]]}
    assert len(synthesized.stack.feature_store.tables) == len(synthesized.settings.feature_views)


def test_ingest_function_gets_the_names_it_needs(synthesized: Synthesized) -> None:
    # GIVEN the ingest function WHEN we read its environment
    fn = function_by_handler(synthesized, "functions.ingest_features.handler")
    variables = fn["Properties"]["Environment"]["Variables"]
    # THEN it names the features bucket, the online table and the Glue database (the curated object
    # comes in the event)
    assert {"MLCYCLE_FEATURES_BUCKET", "MLCYCLE_ONLINE_TABLE", "MLCYCLE_GLUE_DATABASE"} <= set(variables)
    assert variables["MLCYCLE_GLUE_DATABASE"] == synthesized.stack.data_lake.glue_database_name


def test_validated_uploads_of_source_datasets_reach_the_function_with_a_dlq(synthesized: Synthesized) -> None:
    # GIVEN the rule on our bus
    props = synthesized.properties(synthesized.stack.feature_store.validated)
    # THEN it matches DatasetValidated of the views' source datasets, and failed deliveries go to a DLQ
    assert props["EventPattern"] == {
        "source": ["mlcycle"],
        "detail-type": ["DatasetValidated"],
        "detail": {"dataset": ["churn"]},
    }
    assert props["State"] == "ENABLED"
    (target,) = props["Targets"]
    dlq = synthesized.logical_id(synthesized.stack.feature_store.dead_letters)
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq, "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 3


def test_ingest_role_may_add_partitions_and_write_the_online_table(synthesized: Synthesized) -> None:
    # GIVEN the ingest function's role policy
    role = synthesized.logical_id(synthesized.stack.feature_store.ingest.role)
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": role}]
    ]
    actions = {a for s in policy for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    # THEN it may register partitions, write and read the online table, read curated, write features
    assert {
        "glue:BatchCreatePartition",
        "glue:GetTable",
        "dynamodb:PutItem",
        "dynamodb:BatchGetItem",
    } <= actions
    assert {"s3:GetObject*", "s3:PutObject"} <= actions
