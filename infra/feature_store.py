"""The feature store: a Glue table per feature view over the features bucket, the online DynamoDB table,
and the function that ingests each validated upload into both.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from constructs import Construct

from infra import env
from infra.data_lake import DataLake
from infra.functions import FunctionFactory
from infra.gates import acknowledge, iam5_actions, iam5_resource
from infra.queues import dead_letter_queue
from infra.tables import encrypted_table
from mlcycle.config import Settings
from mlcycle.features import offline
from mlcycle.names import EVENT_SOURCE, EventType

#: Lambda retries an asynchronous invocation this often before the event goes to the dead letters.
RETRY_ATTEMPTS = 2


class FeatureStore(Construct):
    """Attributes: ``online_table`` (pk = entity, sk = view), ``tables`` (view name -> Glue CfnTable),
    ``ingest`` (the function), ``validated`` (the rule), ``dead_letters``."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        data_lake: DataLake,
        bus: events.IEventBus,
        functions: FunctionFactory,
    ) -> None:
        super().__init__(scope, id)
        self._settings, self._lake, self._bus = settings, data_lake, bus
        self.online_table: dynamodb.Table = encrypted_table(
            self, "OnlineTable", key=data_lake.key, partition_key="pk", sort_key="sk"
        )
        self.tables = {view.name: self._glue_table(view.name) for view in settings.feature_views}
        self.dead_letters = dead_letter_queue(self, "DeadLetters", key=data_lake.key)
        self.ingest = functions.function(
            self,
            "IngestFeatures",
            handler="functions.ingest_features.handler",
            description="A validated upload's curated rows -> offline feature partitions + online values",
            environment=env.build(
                settings,
                "ingest_features",
                features=data_lake.features,
                online_table=self.online_table,
                glue_database=data_lake.glue_database_name,
                bus=bus,
            ),
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=RETRY_ATTEMPTS,
        )
        # One writer at a time: the online store's read-then-write newer-wins rule relies on it.
        ingest_cfn = self.ingest.node.default_child
        assert isinstance(ingest_cfn, lambda_.CfnFunction)
        ingest_cfn.reserved_concurrent_executions = 1
        self._grant(self.ingest)
        bus.grant_put_events_to(self.ingest)
        self.validated = self._rule()

    def _glue_table(self, view_name: str) -> glue.CfnTable:
        """The view's declared schema over ``s3://{features}/{view}/``, partitioned by event date."""
        view = self._settings.feature_view(view_name)
        contract = self._settings.problem.dataset
        location = self._lake.features.s3_url_for_object(f"{view.name}/")
        table = offline.glue_table_input(view, contract, location)
        descriptor = table["StorageDescriptor"]
        return glue.CfnTable(
            self,
            f"Table{view.name.title().replace('_', '')}",
            catalog_id=cdk.Stack.of(self).account,
            database_name=self._lake.glue_database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=table["Name"],
                description=table["Description"],
                table_type=table["TableType"],
                parameters=table["Parameters"],
                partition_keys=[
                    glue.CfnTable.ColumnProperty(name=c["Name"], type=c["Type"])
                    for c in table["PartitionKeys"]
                ],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[
                        glue.CfnTable.ColumnProperty(name=c["Name"], type=c["Type"])
                        for c in descriptor["Columns"]
                    ],
                    location=location,
                    input_format=descriptor["InputFormat"],
                    output_format=descriptor["OutputFormat"],
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library=descriptor["SerdeInfo"]["SerializationLibrary"]
                    ),
                ),
            ),
        )

    def _rule(self) -> events.Rule:
        sources = sorted({view.source for view in self._settings.feature_views})
        rule = events.Rule(
            self,
            "Validated",
            description="Validated uploads of datasets that feed feature views are ingested",
            event_bus=self._bus,
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE], detail_type=[EventType.DATASET_VALIDATED], detail={"dataset": sources}
            ),
            enabled=bool(sources),
        )
        rule.add_target(
            targets.LambdaFunction(
                self.ingest,
                dead_letter_queue=self.dead_letters,
                retry_attempts=3,
                max_event_age=cdk.Duration.hours(2),
            )
        )
        return rule

    def _grant(self, fn: lambda_.Function) -> None:
        lake = self._lake
        lake.curated.grant_read(fn)
        lake.features.grant_read_write(fn)
        self.online_table.grant_read_write_data(fn)
        lake.grant_register_partitions(fn, self.tables)
        lake.grant_read_partitions(fn, self.tables)
        acknowledge(
            fn.role or fn,
            *iam5_actions("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"),
            *iam5_actions("kms:GenerateDataKey*", "kms:ReEncrypt*"),
            iam5_resource(lake.curated),
            iam5_resource(lake.features),
            reason="CDK bucket/key grants: curated objects are keyed by dataset, date and upload id, and "
            "feature partitions by view, event date and batch, so object-level wildcards are needed.",
        )
