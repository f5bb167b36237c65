"""The security settings become the endpoint configs' KMS keys and the models' VPC placement."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from mlcycle import deployment
from mlcycle.application.settings import example_settings
from mlcycle.config import InstanceTypes, ServerlessCapacity, ServingSettings, Settings
from mlcycle.security import SecuritySettings, VpcSettings

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VPC = VpcSettings(vpc_id="vpc-0abc1234", subnet_ids=("subnet-0a1b2c3d",), security_group_ids=("sg-0c3d4e5f",))


def _settings(**update: Any) -> Settings:
    return example_settings().model_copy(update=update)


def test_endpoint_volumes_and_capture_use_the_stack_key_by_alias_or_the_settings_key() -> None:
    default = _settings()
    assert deployment.volume_key(default) == {"KmsKeyId": "alias/mlcycle-dev-data"}
    assert deployment.capture_config(default, "s3://b/capture")["KmsKeyId"] == "alias/mlcycle-dev-data"
    named = _settings(security=SecuritySettings(endpoint_kms_key_arn=KEY))
    assert deployment.volume_key(named) == {"KmsKeyId": KEY}
    assert deployment.capture_config(named, "s3://b/capture")["KmsKeyId"] == KEY


@pytest.mark.parametrize("instance", ["ml.m5d.large", "ml.g4dn.xlarge", "ml.c6gd.large", "ml.g5.xlarge"])
def test_no_volume_key_where_sagemaker_refuses_one(instance: str) -> None:
    # Instance types with only local NVMe storage (hardware-encrypted), and serverless endpoints.
    assert deployment.volume_key(_settings(instances=InstanceTypes(endpoint=instance))) == {}
    serverless = _settings(serving=ServingSettings(serverless=ServerlessCapacity()))
    assert deployment.volume_key(serverless) == {}
    assert deployment.volume_key(_settings(instances=InstanceTypes(endpoint="ml.m5.large"))) != {}


class _Models:
    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    def describe_model(self, **kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": "ValidationException", "Message": "not found"}}, "DescribeModel")

    def create_model(self, **kwargs: Any) -> None:
        self.created = kwargs


PACKAGE = {
    "ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1",
    "InferenceSpecification": {"Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}]},
}


def test_models_run_in_the_settings_vpc_unless_served_serverless() -> None:
    models: Any = _Models()
    deployment.ensure_model(models, "m", PACKAGE, "role", _settings(security=SecuritySettings(vpc=VPC)))
    assert models.created["VpcConfig"] == {
        "SecurityGroupIds": ["sg-0c3d4e5f"],
        "Subnets": ["subnet-0a1b2c3d"],
    }
    serverless = _settings(
        security=SecuritySettings(vpc=VPC), serving=ServingSettings(serverless=ServerlessCapacity())
    )
    deployment.ensure_model(models, "m", PACKAGE, "role", serverless)
    assert "VpcConfig" not in models.created
    deployment.ensure_model(models, "m", PACKAGE, "role", _settings())
    assert "VpcConfig" not in models.created


def test_vpc_ids_are_checked_as_cloudformation_checks_them() -> None:
    with pytest.raises(ValidationError, match="subnet_ids"):
        VpcSettings(vpc_id="vpc-0abc1234", subnet_ids=("subnet-1",), security_group_ids=("sg-0c3d4e5f",))
    with pytest.raises(ValidationError, match="security_group_ids"):
        VpcSettings(vpc_id="vpc-0abc1234", subnet_ids=("subnet-0a1b2c3d",), security_group_ids=())
    assert SecuritySettings(vpc=VPC).network_isolation and not SecuritySettings().network_isolation
