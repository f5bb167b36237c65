"""A restart of the embedded AWS keeps what is stored and carries on what was in flight
(``mlcycle.local.persistence``): each test restarts this package's embedded AWS in place."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from mlcycle.local.awslambda import invocations
from mlcycle.local.server import EmbeddedAws
from tests.functional.local.conftest import received, unique

Client = Callable[[str], Any]


def test_what_is_stored_is_there_after_a_restart(embedded_aws: EmbeddedAws, aws_client: Client) -> None:
    s3, ddb, sqs, kms = (aws_client(s) for s in ("s3", "dynamodb", "sqs", "kms"))
    bucket = unique("kept")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="data.csv", Body=b"a,b\n1,2\n")["VersionId"]
    s3.put_object(Bucket=bucket, Key="data.csv", Body=b"a,b\n3,4\n")
    table = unique("kept")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=table, Item={"id": {"S": "run-1"}, "status": {"S": "done"}})
    queue = sqs.create_queue(QueueName=unique("kept"))["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="not yet received")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    secret = kms.encrypt(KeyId=key, Plaintext=b"model signing secret")["CiphertextBlob"]
    signing = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]["KeyId"]
    public = kms.get_public_key(KeyId=signing)["PublicKey"]

    embedded_aws.restart()

    assert s3.get_object(Bucket=bucket, Key="data.csv")["Body"].read() == b"a,b\n3,4\n"
    assert s3.get_object(Bucket=bucket, Key="data.csv", VersionId=first)["Body"].read() == b"a,b\n1,2\n"
    assert ddb.get_item(TableName=table, Key={"id": {"S": "run-1"}})["Item"]["status"] == {"S": "done"}
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert message["Body"] == "not yet received"
    assert kms.decrypt(CiphertextBlob=secret)["Plaintext"] == b"model signing secret"
    assert kms.get_public_key(KeyId=signing)["PublicKey"] == public


_WAITING = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": {"rows": 80}, "ResultPath": "$.prepared", "Next": "Wait"},
        "Wait": {"Type": "Wait", "Seconds": 2, "Next": "Report"},
        "Report": {
            "Type": "Pass",
            "Parameters": {"rows.$": "$.prepared.rows", "run.$": "$.run"},
            "End": True,
        },
    },
}


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    return list(sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])


def _entered(history: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def test_a_running_execution_resumes_at_the_state_it_was_in(
    embedded_aws: EmbeddedAws, aws_client: Client, lambda_role: str, wait_for: Any
) -> None:
    sfn = aws_client("stepfunctions")
    machine = sfn.create_state_machine(
        name=unique("resumed"), definition=json.dumps(_WAITING), roleArn=lambda_role
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"run": "r1"}))["executionArn"]
    wait_for(lambda: "Wait" in _entered(_history(sfn, arn)), what="the execution to wait")

    resumed = embedded_aws.restart()

    assert resumed["executions"] == 1
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    wait_for(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING", what="the execution")
    described = sfn.describe_execution(executionArn=arn)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"rows": 80, "run": "r1"}
    history = _history(sfn, arn)
    # The state it was in runs again from its start; what came before it does not.
    assert _entered(history) == ["Prepare", "Wait", "Wait", "Report"]
    assert [e["type"] for e in history].count("ExecutionStarted") == 1
    ids = [e["id"] for e in history]
    assert ids == sorted(set(ids))


def test_an_asynchronous_invocation_in_flight_runs_again_after_a_restart(
    embedded_aws: EmbeddedAws, aws_client: Client, make_function: Any, wait_for: Any
) -> None:
    arn = make_function("slow_record")
    aws_client("lambda").invoke(FunctionName=arn, InvocationType="Event", Payload=b'{"seconds": 6}')
    time.sleep(1.0)  # its environment is running it: the restart interrupts it

    resumed = embedded_aws.restart()
    restarted = time.time()

    assert resumed["async_invocations"] == 1
    assert invocations.wait_for_async(timeout=60)
    (entry,) = received(arn)
    assert entry["event"] == {"seconds": 6}
    assert entry["started"] >= restarted - 1.0
