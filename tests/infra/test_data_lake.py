from __future__ import annotations

from aws_cdk.assertions import Match

from infra.data_lake import DataLake
from mlcycle.config import Settings
from tests.infra.bare import arn, bare_stack, granted, grantee
from tests.infra.synthesized import Synthesized


def test_key_rotates_and_is_retained(synthesized: Synthesized) -> None:
    _, key = synthesized.one("AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"


def test_data_buckets_are_kms_encrypted_versioned_private_and_logged(synthesized: Synthesized) -> None:
    lake = synthesized.stack.data_lake
    key_id = synthesized.logical_id(lake.key)
    logs_id = synthesized.logical_id(lake.access_logs)
    buckets = synthesized.resources("AWS::S3::Bucket")
    for bucket in lake.data_buckets:
        props = buckets[synthesized.logical_id(bucket)]["Properties"]
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert sse["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
        }
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
        rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
        assert rules["housekeeping"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}
        assert rules["housekeeping"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
        assert buckets[synthesized.logical_id(bucket)]["DeletionPolicy"] == "Retain"


def test_access_log_bucket_uses_s3_managed_keys(synthesized: Synthesized) -> None:
    logs_id = synthesized.logical_id(synthesized.stack.data_lake.access_logs)
    props = synthesized.resources("AWS::S3::Bucket")[logs_id]["Properties"]
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert "AccessControl" not in props  # log delivery is granted by bucket policy, not the legacy ACL


def test_landing_moves_to_infrequent_access_after_30_days(synthesized: Synthesized) -> None:
    landing_id = synthesized.logical_id(synthesized.stack.data_lake.landing)
    rules = synthesized.resources("AWS::S3::Bucket")[landing_id]["Properties"]["LifecycleConfiguration"]
    transitions = [t for rule in rules["Rules"] for t in rule.get("Transitions", [])]
    assert transitions == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}]


def test_every_bucket_denies_plain_http(synthesized: Synthesized) -> None:
    policies = synthesized.resources("AWS::S3::BucketPolicy")
    assert len(policies) == len(synthesized.resources("AWS::S3::Bucket"))
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_glue_database(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::Glue::Database",
        {"DatabaseInput": Match.object_like({"Name": synthesized.stack.data_lake.glue_database_name})},
    )
    assert synthesized.stack.data_lake.glue_database_name == "mlcycle_dev"


def test_athena_workgroup_enforces_kms_encrypted_results(synthesized: Synthesized) -> None:
    _, workgroup = synthesized.one("AWS::Athena::WorkGroup")
    config = workgroup["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    result = config["ResultConfiguration"]
    assert result["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    key_id = synthesized.logical_id(synthesized.stack.data_lake.key)
    assert result["EncryptionConfiguration"]["KmsKey"] == {"Fn::GetAtt": [key_id, "Arn"]}
    artifacts_id = synthesized.logical_id(synthesized.stack.data_lake.artifacts)
    assert result["OutputLocation"] == {
        "Fn::Join": ["", ["s3://", {"Ref": artifacts_id}, "/athena-results/"]]
    }


def _glue_tables(lake: DataLake, *tables: str) -> set[str]:
    database = lake.glue_database_name
    return {
        arn("glue", "catalog"),
        arn("glue", f"database/{database}"),
        *(arn("glue", f"table/{database}/{table}") for table in tables),
    }


def test_grant_register_partitions_reads_and_adds_partitions_of_the_named_tables(
    infra_settings: Settings,
) -> None:
    # GIVEN a data lake alone in a stack and a role
    stack = bare_stack()
    lake, role = DataLake(stack, "Lake", settings=infra_settings), grantee(stack)
    # WHEN the role is granted registering partitions of two tables
    lake.grant_register_partitions(role, ["churn", "orders"])
    # THEN it may read those tables and add partitions to them (Glue checks the catalog and database too)
    resources = _glue_tables(lake, "churn", "orders")
    assert granted(stack, role) == {"glue:GetTable": resources, "glue:BatchCreatePartition": resources}


def test_grant_read_partitions_lists_partitions_of_the_named_tables(infra_settings: Settings) -> None:
    # GIVEN a data lake alone in a stack and a role
    stack = bare_stack()
    lake, role = DataLake(stack, "Lake", settings=infra_settings), grantee(stack)
    # WHEN the role is granted reading partitions of one table
    lake.grant_read_partitions(role, ["customer_activity"])
    # THEN it may read that table and list its partitions, and nothing else
    resources = _glue_tables(lake, "customer_activity")
    assert granted(stack, role) == {"glue:GetTable": resources, "glue:GetPartitions": resources}
