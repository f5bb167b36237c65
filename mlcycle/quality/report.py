"""Typed check results and the report that carries them to S3, the registry and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Stage = Literal["pre_training", "post_training"]


@dataclass(frozen=True)
class CheckResult:
    """One check: its measured ``value`` against ``threshold``; a skipped check passes and says why."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    skipped: bool = False

    def __post_init__(self) -> None:
        # Checks compute with numpy: keep plain Python values so that the report is plain JSON.
        object.__setattr__(self, "passed", bool(self.passed))
        for name in ("value", "threshold"):
            raw = getattr(self, name)
            object.__setattr__(self, name, None if raw is None else float(raw))

    @classmethod
    def skip(cls, name: str, why: str) -> CheckResult:
        return cls(name=name, passed=True, value=None, threshold=None, detail=f"skipped: {why}", skipped=True)

    def line(self) -> str:
        mark = "skip" if self.skipped else ("pass" if self.passed else "FAIL")
        return f"[{mark}] {self.name}: {self.detail}"


class ModelTestsFailed(Exception):
    """A report with failed checks; the message is its summary (it ends up in failure reports)."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.summary())
        self.report = report


@dataclass
class Report:
    stage: Stage
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line: what failed (with values), or how many checks passed."""
        ran = [c for c in self.checks if not c.skipped]
        if self.passed:
            return f"{self.stage} tests: all {len(ran)} checks passed"
        failures = "; ".join(f"{c.name}: {c.detail}" for c in self.failed)
        return f"{self.stage} tests: {len(self.failed)} of {len(ran)} checks failed: {failures}"

    def raise_for_failures(self) -> None:
        if not self.passed:
            raise ModelTestsFailed(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "passed": self.passed,
            "summary": self.summary(),
            "checks": [
                asdict(c) | {"value": _finite(c.value), "threshold": _finite(c.threshold)}
                for c in self.checks
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(stage=data["stage"], checks=[CheckResult(**c) for c in data["checks"]])


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: such values are reported as null."""
    return value if value is None or math.isfinite(value) else None
