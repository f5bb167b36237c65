"""What every patch of the embedded AWS needs to know about the running instance."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

ACCOUNT_ID = "123456789012"  # moto's default account


@dataclass
class LocalContext:
    """The running embedded AWS, handed to each module's ``install``."""

    endpoint_url: str
    region: str
    work_dir: Path
    account: str = ACCOUNT_ID
    #: Interpreter for SageMaker job processes and local model servers.
    python: str = field(default_factory=lambda: sys.executable)
    #: Schedules fire this many times faster than their expression says (demos and tests).
    time_scale: float = 1.0

    @property
    def port(self) -> int:
        return int(self.endpoint_url.rsplit(":", 1)[1])
