"""Data preparation: uploads to the landing bucket are checked against their contract and curated."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct

from infra import env
from infra.data_lake import DataLake
from infra.functions import FunctionFactory
from infra.gates import acknowledge, iam5_actions, iam5_resource, ignore_redundant_depends_on
from infra.queues import dead_letter_queue
from mlcycle.config import Settings

#: Where uploads land: ``uploads/{dataset}/{file}``.
UPLOADS_PREFIX = "uploads/"
#: S3 invokes asynchronously; Lambda retries this often before the event goes to the dead letters.
RETRY_ATTEMPTS = 2


class DataPreparation(Construct):
    """Attributes: ``prepare_data`` (the function), ``dead_letters`` (uploads it could not process)."""

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
        self.dead_letters = dead_letter_queue(self, "DeadLetters", key=data_lake.key)
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
            ),
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=RETRY_ATTEMPTS,
        )
        data_lake.landing.grant_read(self.prepare_data)
        data_lake.curated.grant_read_write(self.prepare_data)
        bus.grant_put_events_to(self.prepare_data)
        data_lake.landing.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(self.prepare_data),
            s3.NotificationKeyFilter(prefix=UPLOADS_PREFIX),
        )
        self._acknowledge(data_lake, self.prepare_data)

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
