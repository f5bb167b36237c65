"""The platform as deployed, local or in AWS: where its pieces are, by role (from the stack's outputs)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from mlcycle.names import Output


@dataclass(frozen=True)
class Platform:
    """One field per :class:`mlcycle.names.Output` (``Output.X.field``)."""

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
    sagemaker_role: str = ""
    monitor_table: str = ""
    alert_table: str = ""
    alerts_topic: str = ""
    retraining_table: str = ""

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, object]) -> Platform:
        """From a stack's outputs (``{OutputKey: value}``); raises naming any the stack lacks."""
        missing = [str(o) for o in Output if o not in outputs]
        if missing:
            raise KeyError(f"the stack does not export {missing}")
        return cls(**{o.field: str(outputs[o]) for o in Output})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Platform:
        return cls(**json.loads(path.read_text()))
