from __future__ import annotations

import json
from typing import Any

from tests.infra.synthesized import Synthesized, function_by_handler


def test_uploads_to_landing_invoke_prepare_data(synthesized: Synthesized) -> None:
    _, notifications = synthesized.one("Custom::S3BucketNotifications")
    props = notifications["Properties"]
    assert props["BucketName"] == {"Ref": synthesized.logical_id(synthesized.stack.data_lake.landing)}
    (config,) = props["NotificationConfiguration"]["LambdaFunctionConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"] == {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}}
    fn_id = synthesized.logical_id(synthesized.stack.data_preparation.prepare_data)
    assert config["LambdaFunctionArn"] == {"Fn::GetAtt": [fn_id, "Arn"]}


def _table(synthesized: Synthesized, construct: Any) -> dict[str, Any]:
    return synthesized.properties(construct)


def test_idempotency_and_lineage_tables_are_encrypted_on_demand(synthesized: Synthesized) -> None:
    key_id = synthesized.logical_id(synthesized.stack.data_lake.key)
    idempotency = _table(synthesized, synthesized.stack.data_preparation.idempotency_table)
    lineage = _table(synthesized, synthesized.stack.lineage.table)
    for props in (idempotency, lineage):
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"] == {
            "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
            "SSEEnabled": True,
            "SSEType": "KMS",
        }
    assert idempotency["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert idempotency["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert [k["AttributeName"] for k in lineage["KeySchema"]] == ["pk", "sk"]
    assert lineage["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_prepare_data_gets_its_tables_database_and_state_machine(synthesized: Synthesized) -> None:
    prep = synthesized.stack.data_preparation
    variables = function_by_handler(synthesized, "functions.prepare_data.handler")["Properties"][
        "Environment"
    ]["Variables"]
    assert variables["MLCYCLE_IDEMPOTENCY_TABLE"] == {"Ref": synthesized.logical_id(prep.idempotency_table)}
    assert variables["MLCYCLE_LINEAGE_TABLE"] == {
        "Ref": synthesized.logical_id(synthesized.stack.lineage.table)
    }
    assert variables["MLCYCLE_GLUE_DATABASE"] == "mlcycle_dev"
    assert variables["MLCYCLE_LARGE_UPLOAD_STATE_MACHINE"] == {
        "Ref": synthesized.logical_id(prep.large_uploads)
    }
    build = function_by_handler(synthesized, "functions.build_training_set.handler")["Properties"]
    assert "MLCYCLE_LINEAGE_TABLE" in build["Environment"]["Variables"]


def test_curated_table_follows_the_contract(synthesized: Synthesized) -> None:
    contract = synthesized.settings.problem.dataset
    table = synthesized.stack.data_preparation.curated_tables[contract.name]
    props = synthesized.template.to_json()["Resources"][synthesized.stack.get_logical_id(table)]["Properties"]
    table_input = props["TableInput"]
    assert table_input["Name"] == contract.name
    assert table_input["PartitionKeys"] == [{"Name": "ingest_date", "Type": "string"}]
    descriptor = table_input["StorageDescriptor"]
    assert [c["Name"] for c in descriptor["Columns"]] == [c.name for c in contract.columns]
    assert {c["Name"]: c["Type"] for c in descriptor["Columns"]}["tenure_months"] == "bigint"
    assert "ParquetHiveSerDe" in descriptor["SerdeInfo"]["SerializationLibrary"]
    assert descriptor["Location"]["Fn::Join"][1][-1] == f"/curated/{contract.name}/"


def test_large_upload_state_machine_is_a_distributed_map_over_the_plan(synthesized: Synthesized) -> None:
    machine = synthesized.properties(synthesized.stack.data_preparation.large_uploads)
    parts = machine["DefinitionString"]["Fn::Join"][1]
    definition = json.loads("".join(p if isinstance(p, str) else "<token>" for p in parts))
    assert definition["StartAt"] == "Plan"
    check = definition["States"]["CheckChunks"]
    assert check["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert check["ItemReader"]["Parameters"]["Key.$"] == "$.plan_key"
    assert check["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert check["Next"] == "Finish" and check["ResultPath"] is None
