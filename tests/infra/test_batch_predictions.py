"""What batch predictions (mlcycle predict) need from the stack: the SageMaker execution role, exported,
able to read models and inputs and write outputs in the artifacts bucket."""

from __future__ import annotations

import json
from typing import Any

from mlcycle.names import Output
from tests.infra.synthesized import Synthesized


def _statements(synthesized: Synthesized, role_id: str) -> list[dict[str, Any]]:
    policies = synthesized.resources("AWS::IAM::Policy").values()
    return [
        statement
        for policy in policies
        if {"Ref": role_id} in policy["Properties"].get("Roles", [])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_sagemaker_role_is_exported_and_reads_and_writes_the_artifacts_bucket(
    synthesized: Synthesized,
) -> None:
    role_id = synthesized.logical_id(synthesized.stack.training.sagemaker_role)
    output = synthesized.template.to_json()["Outputs"][str(Output.SAGEMAKER_ROLE)]
    assert output["Value"] == {"Fn::GetAtt": [role_id, "Arn"]}
    artifacts = synthesized.logical_id(synthesized.stack.data_lake.artifacts)
    granted = json.dumps(
        [s for s in _statements(synthesized, role_id) if artifacts in json.dumps(s.get("Resource"))]
    )
    for action in ("s3:GetObject*", "s3:List*", "s3:PutObject"):
        assert action in granted, action
