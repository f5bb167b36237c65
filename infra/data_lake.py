"""Data storage and exploration: the KMS key, the buckets, the Glue database and the Athena workgroup."""

from __future__ import annotations

from collections.abc import Iterable

import aws_cdk as cdk
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.gates import acknowledge
from mlcycle.config import Settings
from mlcycle.security import data_key_alias

#: Prefix of the curated bucket where rows that fail their contract go.
QUARANTINE_PREFIX = "quarantine/"
#: Where Athena writes query results in the artifacts bucket.
ATHENA_RESULTS_PREFIX = "athena-results/"


class DataLake(Construct):
    """The platform's storage.

    Attributes: ``key`` (the customer-managed key everything is encrypted with), ``landing``,
    ``curated``, ``features``, ``artifacts``, ``monitoring`` (buckets), ``access_logs`` (the server
    access log bucket), ``glue_database_name``, ``athena_workgroup_name``.

    Grants on named tables of the Glue database: ``grant_register_partitions``, ``grant_read_partitions``
    (the buckets and the key offer the CDK's own).
    """

    def __init__(self, scope: Construct, id: str, *, settings: Settings) -> None:
        super().__init__(scope, id)
        self.key = kms.Key(
            self,
            "Key",
            description=f"{settings.prefix}: data, queues, topics and logs",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        # Deployments name the key by this alias in endpoint configs (mlcycle.deployment.volume_key): the
        # settings bundled with the functions cannot hold the key's ARN, which CloudFormation makes.
        self.key.add_alias(data_key_alias(settings.prefix))
        self._allow_service_use_of_key()
        self.access_logs = self._access_log_bucket()
        self.landing = self._bucket("Landing", transition_to_ia=True)
        self.curated = self._bucket("Curated")
        self.features = self._bucket("Features")
        self.artifacts = self._bucket("Artifacts")
        self.monitoring = self._bucket("Monitoring")
        self.glue_database_name = settings.prefix.replace("-", "_")
        self._glue_database()
        self.athena_workgroup_name = settings.prefix
        self._athena_workgroup()

    def _allow_service_use_of_key(self) -> None:
        """Services that encrypt with the key on our behalf need it in the key policy.

        CloudWatch Logs (encrypted log groups), EventBridge (delivering to KMS-encrypted DLQs) and
        CloudWatch alarms (publishing to KMS-encrypted topics) act as their service principals, which
        IAM grants on our roles cannot cover.
        """
        stack = cdk.Stack.of(self)
        logs_principal = iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                principals=[logs_principal],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[
                    iam.ServicePrincipal("events.amazonaws.com"),
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                ],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )

    def _access_log_bucket(self) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access log delivery supports only S3-managed keys on the target bucket.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-logs", expiration=cdk.Duration.days(365)),
                *_housekeeping(),
            ],
        )
        acknowledge(
            bucket,
            "AwsSolutions-S1",
            reason="This is the server access log bucket itself; logging it to itself would loop.",
        )
        return bucket

    def _bucket(self, id: str, *, transition_to_ia: bool = False) -> s3.Bucket:
        # RETAIN: data outlives the stack. A dev stage can empty and delete the buckets by hand.
        rules = _housekeeping()
        if transition_to_ia:
            rules.append(
                s3.LifecycleRule(
                    id="landing-to-infrequent-access",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=cdk.Duration.days(30),
                        )
                    ],
                )
            )
        return s3.Bucket(
            self,
            id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{id.lower()}/",
            lifecycle_rules=rules,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    def _glue_database(self) -> None:
        glue.CfnDatabase(
            self,
            "GlueDatabase",
            catalog_id=cdk.Stack.of(self).account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.glue_database_name,
                description="Curated datasets and feature views",
                location_uri=self.curated.s3_url_for_object("curated/"),
            ),
        )

    def _athena_workgroup(self) -> None:
        athena.CfnWorkGroup(
            self,
            "AthenaWorkgroup",
            name=self.athena_workgroup_name,
            description="Exploration of curated data and features",
            recursive_delete_option=False,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=self.artifacts.s3_url_for_object(ATHENA_RESULTS_PREFIX),
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS",
                        kms_key=self.key.key_arn,
                    ),
                ),
            ),
        )

    @property
    def data_buckets(self) -> tuple[s3.Bucket, ...]:
        return (self.landing, self.curated, self.features, self.artifacts, self.monitoring)

    # -- grants on the Glue database (its tables belong to the stages that declare them) ----------------

    def grant_register_partitions(self, grantee: iam.IGrantable, tables: Iterable[str]) -> iam.Grant:
        """Add partitions to the named tables of the database (the table's descriptor is read first)."""
        return self._grant_tables(grantee, tables, "glue:GetTable", "glue:BatchCreatePartition")

    def grant_read_partitions(self, grantee: iam.IGrantable, tables: Iterable[str]) -> iam.Grant:
        """List the partitions of the named tables of the database."""
        return self._grant_tables(grantee, tables, "glue:GetTable", "glue:GetPartitions")

    def _grant_tables(self, grantee: iam.IGrantable, tables: Iterable[str], *actions: str) -> iam.Grant:
        """Glue authorizes a table action on the catalog, the database and the table: all three, by name."""
        stack, database = cdk.Stack.of(self), self.glue_database_name
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(actions),
            resource_arns=[
                stack.format_arn(service="glue", resource="catalog"),
                stack.format_arn(service="glue", resource="database", resource_name=database),
                *(
                    stack.format_arn(service="glue", resource="table", resource_name=f"{database}/{table}")
                    for table in tables
                ),
            ],
        )


def _housekeeping() -> list[s3.LifecycleRule]:
    """Rules every bucket gets: old versions and abandoned multipart uploads do not pile up."""
    return [
        s3.LifecycleRule(
            id="housekeeping",
            noncurrent_version_expiration=cdk.Duration.days(90),
            abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
        )
    ]
