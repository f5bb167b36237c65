"""Dead-letter queues for asynchronous invocations and event deliveries."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.gates import acknowledge


def dead_letter_queue(scope: Construct, id: str, *, key: kms.IKey) -> sqs.Queue:
    """A KMS-encrypted, TLS-only queue that keeps failed events for two weeks (SQS's maximum)."""
    queue = sqs.Queue(
        scope,
        id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=cdk.Duration.days(14),
    )
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        reason="This queue is itself a dead-letter queue (a Lambda on-failure destination or an "
        "EventBridge target DLQ); cdk-nag only recognises DLQs of other queues.",
    )
    return queue
