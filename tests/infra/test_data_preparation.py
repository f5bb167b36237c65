from __future__ import annotations

from tests.infra.conftest import Synthesized


def test_uploads_to_landing_invoke_prepare_data(synthesized: Synthesized) -> None:
    _, notifications = synthesized.one("Custom::S3BucketNotifications")
    props = notifications["Properties"]
    assert props["BucketName"] == {"Ref": synthesized.logical_id(synthesized.stack.data_lake.landing)}
    (config,) = props["NotificationConfiguration"]["LambdaFunctionConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"] == {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}}
    fn_id = synthesized.logical_id(synthesized.stack.data_preparation.prepare_data)
    assert config["LambdaFunctionArn"] == {"Fn::GetAtt": [fn_id, "Arn"]}
