from __future__ import annotations

from tests.infra.conftest import Synthesized


def test_model_package_group_is_named_from_settings(synthesized: Synthesized) -> None:
    _, group = synthesized.one("AWS::SageMaker::ModelPackageGroup")
    assert group["Properties"]["ModelPackageGroupName"] == synthesized.settings.model_package_group
