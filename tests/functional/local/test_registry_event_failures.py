"""An approval change whose event cannot be put fails the call and is undone, so a retry deploys it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlcycle.local.sagemaker import registry_events
from tests.functional.local.conftest import unique

Client = Callable[[str], Any]

INFERENCE = {
    "Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["application/json"],
}


@pytest.fixture
def group_and_queue(aws_client: Client) -> tuple[str, str]:
    """A model package group and a queue receiving its state change events."""
    sagemaker, sqs, events = aws_client("sagemaker"), aws_client("sqs"), aws_client("events")
    group = unique("group")
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    url = sqs.create_queue(QueueName=unique("approvals"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["aws.sagemaker"], "detail": {"ModelPackageGroupName": [group]}}
    rule = unique("approvals")
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return group, url


class Bus:
    """Turns the embedded AWS's putting of SageMaker events off and on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._patch = monkeypatch

    def down(self) -> None:
        def refuse(*_: Any, **__: Any) -> None:
            raise ValueError("event 'SageMaker Model Package State Change' was rejected")

        self._patch.setattr(registry_events, "put_sagemaker_event", refuse)

    def up(self) -> None:
        self._patch.undo()


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Bus:
    return Bus(monkeypatch)


def _statuses(aws_client: Client, url: str, count: int, wait_for: Any) -> list[str]:
    received: list[str] = []

    def arrived() -> bool:
        sqs = aws_client("sqs")
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received.append(json.loads(message["Body"])["detail"]["ModelApprovalStatus"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(received) >= count

    wait_for(arrived, timeout=10, what=f"{count} state change event(s)")
    return received


def test_a_registration_whose_event_fails_is_not_kept_and_its_retry_registers_once(
    aws_client: Client, wait_for: Any, group_and_queue: tuple[str, str], bus: Bus
) -> None:
    group, url = group_and_queue
    sagemaker = aws_client("sagemaker")
    request = {
        "ModelPackageGroupName": group,
        "InferenceSpecification": INFERENCE,
        "ModelApprovalStatus": "Approved",
        "ClientToken": "job-1",
    }
    # GIVEN the bus refuses the event
    bus.down()
    # WHEN the register step creates its approved package
    # THEN the call fails with the reason, and no version is left behind without its event
    with pytest.raises(ClientError, match="State Change event could not be put") as failed:
        sagemaker.create_model_package(**request)
    assert failed.value.response["Error"]["Code"] == "InternalFailure"
    assert sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"] == []
    # WHEN the step is retried once the bus works, and again (Step Functions retries are at least once)
    bus.up()
    first = sagemaker.create_model_package(**request)["ModelPackageArn"]
    again = sagemaker.create_model_package(**request)["ModelPackageArn"]
    # THEN one version exists, announced once
    assert first == again and first.endswith("/1")
    assert len(sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]) == 1
    assert _statuses(aws_client, url, 1, wait_for) == ["Approved"]


def test_an_approval_whose_event_fails_is_undone_and_its_retry_announces_it(
    aws_client: Client, wait_for: Any, group_and_queue: tuple[str, str], bus: Bus
) -> None:
    group, url = group_and_queue
    sagemaker = aws_client("sagemaker")
    arn = sagemaker.create_model_package(ModelPackageGroupName=group, InferenceSpecification=INFERENCE)[
        "ModelPackageArn"
    ]
    assert _statuses(aws_client, url, 1, wait_for) == ["PendingManualApproval"]
    # GIVEN the bus refuses events again
    bus.down()
    # WHEN a person approves the version
    # THEN the approval fails and the version still waits (approving it again is what deploys it)
    with pytest.raises(ClientError, match=r"approval change .* was not stored"):
        sagemaker.update_model_package(
            ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="looks good"
        )
    described = sagemaker.describe_model_package(ModelPackageName=arn)
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert "ApprovalDescription" not in described
    # WHEN the approval is retried once the bus works
    bus.up()
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    # THEN it is stored and announced
    assert sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"
    assert _statuses(aws_client, url, 1, wait_for) == ["Approved"]
