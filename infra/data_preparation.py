"""Data preparation: uploads to the landing bucket are checked against their contract and curated.

Small uploads are prepared by one function run; larger ones (``functions.large_upload_bytes``) by the
large-upload state machine: plan -> Distributed Map over chunks -> finish. Both register the curated
partition in the dataset's Glue table and record lineage. An idempotency table makes a redelivered S3
event write nothing twice.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra import env
from infra.data_lake import DataLake
from infra.functions import RESERVED_CONCURRENCY, THROTTLED, FunctionFactory, encrypted_log_group
from infra.gates import acknowledge, iam5_actions, iam5_arn, iam5_resource, ignore_redundant_depends_on
from infra.lineage import Lineage
from infra.queues import dead_letter_queue
from infra.tables import encrypted_table
from mlcycle.config import DatasetContract, Settings
from mlcycle.data import catalog
from mlcycle.data.prepare import contracts

#: Where uploads land: ``uploads/{dataset}/{file}``.
UPLOADS_PREFIX = "uploads/"
#: S3 invokes asynchronously; Lambda retries this often before the event goes to the dead letters.
RETRY_ATTEMPTS = 2
#: Powertools idempotency's default attribute names.
IDEMPOTENCY_KEY = "id"
IDEMPOTENCY_TTL = "expiration"
#: Chunks checked at once by the Distributed Map (each is one function run).
CHUNK_CONCURRENCY = 20


def _retry_throttled(task: tasks.LambdaInvoke) -> tasks.LambdaInvoke:
    """Several large uploads at once may use a function's whole reserved concurrency: wait for it."""
    task.add_retry(errors=[THROTTLED], interval=cdk.Duration.seconds(5), max_attempts=6, backoff_rate=2)
    return task


class DataPreparation(Construct):
    """Attributes: ``prepare_data`` (the function), ``dead_letters`` (uploads it could not process),
    ``idempotency_table``, ``curated_tables`` (Glue tables by dataset), ``large_uploads`` (the state
    machine) and its functions ``plan_chunks``, ``check_chunk``, ``finish_upload``.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: Settings,
        data_lake: DataLake,
        bus: events.IEventBus,
        functions: FunctionFactory,
        lineage: Lineage,
    ) -> None:
        super().__init__(scope, id)
        self._settings, self._lake, self._bus, self._lineage = settings, data_lake, bus, lineage
        self.dead_letters = dead_letter_queue(self, "DeadLetters", key=data_lake.key)
        self.idempotency_table = encrypted_table(
            self,
            "Idempotency",
            key=data_lake.key,
            partition_key=IDEMPOTENCY_KEY,
            ttl_attribute=IDEMPOTENCY_TTL,
            keep=False,
        )
        self.curated_tables = {
            name: self._curated_table(contract) for name, contract in contracts(settings).items()
        }
        self.plan_chunks, self.check_chunk, self.finish_upload = self._large_upload_functions(functions)
        self.large_uploads = self._large_upload_machine()
        self.prepare_data = functions.function(
            self,
            "PrepareData",
            handler="functions.prepare_data.handler",
            description="Contract check of an upload: curated Parquet or quarantine, then an event",
            environment=env.build(
                settings,
                "prepare_data",
                curated=data_lake.curated,
                bus=bus,
                glue_database=data_lake.glue_database_name,
                idempotency_table=self.idempotency_table,
                lineage_table=lineage.table,
                large_upload_state_machine=self.large_uploads,
            ),
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=RETRY_ATTEMPTS,
        )
        data_lake.landing.grant_read(self.prepare_data)
        self._grant_conclude(self.prepare_data)
        self.idempotency_table.grant_read_write_data(self.prepare_data)
        self.large_uploads.grant_start_execution(self.prepare_data)
        data_lake.landing.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(self.prepare_data),
            s3.NotificationKeyFilter(prefix=UPLOADS_PREFIX),
        )
        for fn in (self.prepare_data, self.plan_chunks, self.check_chunk, self.finish_upload):
            self._acknowledge(data_lake, fn)

    # -- the curated Glue tables ----------------------------------------------------------------------

    def _curated_table(self, contract: DatasetContract) -> glue.CfnTable:
        """One table per dataset, its columns from the contract (the prepare step adds partitions)."""
        lake = self._lake
        descriptor = catalog.storage_descriptor(contract, location="")
        table = glue.CfnTable(
            self,
            f"CuratedTable-{contract.name}",
            catalog_id=cdk.Stack.of(self).account,
            database_name=lake.glue_database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=catalog.table_name(contract.name),
                description=f"Curated rows of dataset {contract.name} (mlcycle prepare-data)",
                table_type="EXTERNAL_TABLE",
                parameters={"classification": "parquet", "EXTERNAL": "TRUE"},
                partition_keys=[glue.CfnTable.ColumnProperty(name=catalog.PARTITION_KEY, type="string")],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[
                        glue.CfnTable.ColumnProperty(name=c["Name"], type=c["Type"])
                        for c in descriptor["Columns"]
                    ],
                    location=lake.curated.s3_url_for_object(catalog.curated_prefix(contract.name)),
                    input_format=descriptor["InputFormat"],
                    output_format=descriptor["OutputFormat"],
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library=descriptor["SerdeInfo"]["SerializationLibrary"],
                        parameters=descriptor["SerdeInfo"]["Parameters"],
                    ),
                ),
            ),
        )
        database = lake.node.try_find_child("GlueDatabase")
        if isinstance(database, cdk.CfnResource):
            table.add_resource_dependency(database)
        return table

    def _grant_conclude(self, fn: lambda_.Function) -> None:
        """What concluding an upload needs: curated/quarantine writes, Glue partitions, lineage, events."""
        self._lake.curated.grant_read_write(fn)
        self._lineage.grant_record(fn)
        self._bus.grant_put_events_to(fn)
        self._lake.grant_register_partitions(fn, self.curated_tables)

    # -- the large-upload state machine ---------------------------------------------------------------

    def _large_upload_functions(
        self, functions: FunctionFactory
    ) -> tuple[lambda_.Function, lambda_.Function, lambda_.Function]:
        settings, lake = self._settings, self._lake
        built = []
        for id, handler, what in (
            ("PlanChunks", "plan", "Large upload: stream the object once and list its chunks"),
            (
                "CheckChunk",
                "chunk",
                "Large upload: contract check of one chunk into curated/quarantine parts",
            ),
            (
                "FinishUpload",
                "finish",
                "Large upload: cross-chunk keys, report, manifest, partition, lineage",
            ),
        ):
            environment = env.build(
                settings,
                f"large_upload_{handler}",
                curated=lake.curated,
                bus=self._bus if handler == "finish" else None,
                glue_database=lake.glue_database_name if handler == "finish" else None,
                lineage_table=self._lineage.table if handler == "finish" else None,
            )
            fn = functions.function(
                self,
                id,
                handler=f"functions.large_upload.{handler}",
                description=what,
                environment=environment,
                # Each chunk of the Distributed Map is one run: a full map must not wait on the reservation.
                reserved_concurrency=CHUNK_CONCURRENCY if handler == "chunk" else RESERVED_CONCURRENCY,
            )
            lake.landing.grant_read(fn)
            built.append(fn)
        plan, chunk, finish = built
        lake.curated.grant_read_write(plan)
        lake.curated.grant_read_write(chunk)
        self._grant_conclude(finish)
        return plan, chunk, finish

    def _large_upload_machine(self) -> sfn.StateMachine:
        plan = tasks.LambdaInvoke(
            self,
            "Plan",
            lambda_function=self.plan_chunks,
            payload_response_only=True,
            retry_on_service_exceptions=True,
        )
        check = sfn.DistributedMap(
            self,
            "CheckChunks",
            item_reader=sfn.S3JsonItemReader(
                bucket=self._lake.curated, key=sfn.JsonPath.string_at("$.plan_key")
            ),
            item_selector={
                "item": sfn.JsonPath.string_at("$$.Map.Item.Value"),
                **{
                    k: sfn.JsonPath.string_at(f"$.{k}")
                    for k in ("upload", "format", "header", "now", "ingest_date", "size")
                },
            },
            max_concurrency=CHUNK_CONCURRENCY,
            result_path=sfn.JsonPath.DISCARD,
        )
        check.item_processor(
            _retry_throttled(
                tasks.LambdaInvoke(
                    self, "Check", lambda_function=self.check_chunk, payload_response_only=True
                )
            )
        )
        finish = _retry_throttled(
            tasks.LambdaInvoke(self, "Finish", lambda_function=self.finish_upload, payload_response_only=True)
        )
        _retry_throttled(plan)
        log_group = encrypted_log_group(self, "LargeUploadLogs", settings=self._settings, key=self._lake.key)
        machine = sfn.StateMachine(
            self,
            "LargeUploads",
            definition_body=sfn.DefinitionBody.from_chainable(plan.next(check).next(finish)),
            tracing_enabled=True,
            timeout=cdk.Duration.hours(6),
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment=f"{self._settings.prefix}: one large upload checked in chunks",
        )
        self._lake.key.grant(machine, "kms:CreateGrant", "kms:DescribeKey")
        ignore_redundant_depends_on(machine)
        self._acknowledge_machine(machine)
        return machine

    def _acknowledge_machine(self, machine: sfn.StateMachine) -> None:
        stack = cdk.Stack.of(self)
        curated = stack.get_logical_id(self._lake.curated.node.default_child)  # type: ignore[arg-type]
        machine_id = stack.get_logical_id(machine.node.default_child)  # type: ignore[arg-type]
        # How cdk-nag prints the state machine's name cut out of its ARN in the execution ARNs.
        name = f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{machine_id}"}}]}}]}}'
        acknowledge(
            machine,
            *(iam5_resource(fn, ":*") for fn in (self.plan_chunks, self.check_chunk, self.finish_upload)),
            reason="The CDK's LambdaInvoke grant also covers the functions' versions and aliases (':*').",
        )
        acknowledge(
            machine,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::<{curated}>/*]",
            reason="The Distributed Map's ItemReader reads the chunk list whose key is made per upload "
            "(staging/large-uploads/{upload id}/plan.json), so the read grant is on the bucket's objects.",
        )
        acknowledge(
            machine,
            iam5_arn(self, "states", f"execution:{name}:*"),
            iam5_arn(self, "states", f"execution:{name}/*:*"),
            reason="A Distributed Map runs child executions named at run time; the CDK grants describing "
            "and stopping any execution of this state machine.",
        )
        acknowledge(
            machine,
            "AwsSolutions-IAM5[Resource::*]",
            reason="Actions without resource-level permissions: the CloudWatch Logs delivery APIs "
            "(logging to our log group) and X-Ray tracing.",
        )

    def _acknowledge(self, lake: DataLake, fn: lambda_.Function) -> None:
        acknowledge(
            fn.role or fn,
            *iam5_actions("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"),
            *iam5_actions("kms:GenerateDataKey*", "kms:ReEncrypt*"),
            iam5_resource(lake.landing),
            iam5_resource(lake.curated),
            reason="CDK bucket/key grants: uploads arrive under any dataset prefix and curated/quarantine "
            "objects are keyed by dataset, date and upload id, so object-level wildcards are needed.",
        )
        handler = cdk.Stack.of(self).node.try_find_child(
            "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"
        )
        if handler is not None:
            ignore_redundant_depends_on(handler)
            acknowledge(
                handler,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                "AwsSolutions-IAM5[Resource::*]",
                reason="The CDK's own handler that sets bucket notifications at deploy time: it needs "
                "s3:PutBucketNotification on buckets named only at deploy time, and basic logging.",
            )
