"""Step Functions on the embedded AWS: name executions as AWS does.

moto's executing backend keeps a missing execution name as ``None`` (its ARN ends in ``:None`` and
``$$.Execution.Name`` is null), while AWS generates a UUID. Executions started by StartExecution
without a name, and by EventBridge rules, need the UUID: the training pipeline names jobs after it.
"""

from __future__ import annotations

import uuid
from typing import Any

from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from mlcycle.local.context import LocalContext

_original: Any = None


def _start_execution(
    self: StepFunctionsParserBackend, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any
) -> Any:
    return _original(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)


def install(ctx: LocalContext) -> None:
    global _original  # noqa: PLW0603 - one patch per process, undone by uninstall()
    if _original is None:
        _original = StepFunctionsParserBackend.start_execution
        StepFunctionsParserBackend.start_execution = _start_execution  # type: ignore[method-assign]


def uninstall() -> None:
    global _original  # noqa: PLW0603
    if _original is not None:
        StepFunctionsParserBackend.start_execution = _original  # type: ignore[method-assign]
        _original = None
