from __future__ import annotations

from tests.assembly import ALERT_EMAIL
from tests.infra.synthesized import Synthesized


def test_topics_are_kms_encrypted_and_tls_only(synthesized: Synthesized) -> None:
    key_id = synthesized.logical_id(synthesized.stack.data_lake.key)
    topics = synthesized.resources("AWS::SNS::Topic")
    assert len(topics) == 2
    for topic in topics.values():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    for policy in synthesized.resources("AWS::SNS::TopicPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_alert_emails_subscribe_to_alerts(synthesized: Synthesized) -> None:
    _, subscription = synthesized.one("AWS::SNS::Subscription")
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == ALERT_EMAIL
    alerts_id = synthesized.logical_id(synthesized.stack.alerting.alerts)
    assert subscription["Properties"]["TopicArn"] == {"Ref": alerts_id}
