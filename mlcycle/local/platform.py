"""The platform as provisioned into the embedded AWS: where its pieces are, by role."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mlcycle.local.provision import Stack

#: CfnOutput names the stack exports (infra/stack.py) and the local cycle reads.
OUTPUTS = {
    "landing_bucket": "LandingBucketName",
    "curated_bucket": "CuratedBucketName",
    "artifacts_bucket": "ArtifactsBucketName",
    "monitoring_bucket": "MonitoringBucketName",
    "training_state_machine": "TrainingStateMachineArn",
    "event_bus": "EventBusName",
    "lineage_table": "LineageTableName",
    "features_bucket": "FeaturesBucketName",
    "online_table": "OnlineTableName",
    "glue_database": "GlueDatabaseName",
    "athena_workgroup": "AthenaWorkGroupName",
}


@dataclass(frozen=True)
class Platform:
    landing_bucket: str
    curated_bucket: str
    artifacts_bucket: str
    monitoring_bucket: str
    training_state_machine: str
    event_bus: str
    lineage_table: str = ""  # a default keeps state files written before the lineage table readable
    features_bucket: str = ""  # defaults, as for lineage_table: older state files stay readable
    online_table: str = ""
    glue_database: str = ""
    athena_workgroup: str = ""

    @classmethod
    def from_stack(cls, stack: Stack) -> Platform:
        missing = [o for o in OUTPUTS.values() if o not in stack.outputs]
        if missing:
            raise KeyError(f"the stack does not export {missing}")
        return cls(**{field: str(stack.outputs[name]) for field, name in OUTPUTS.items()})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Platform:
        return cls(**json.loads(path.read_text()))
