"""Step Functions on the embedded AWS: name executions as AWS does.

moto's executing backend keeps a missing execution name as ``None`` (its ARN ends in ``:None`` and
``$$.Execution.Name`` is null), while AWS generates a UUID. Executions started by StartExecution
without a name, and by EventBridge rules, need the UUID: the training pipeline names jobs after it.
"""

from __future__ import annotations

import uuid
from typing import Any

from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from mlcycle.local import context
from mlcycle.local.context import LocalContext
from mlcycle.local.patching import MethodPatches


class StepFunctionsState(MethodPatches):
    """moto's replaced method, on the running embedded AWS."""


def install(ctx: LocalContext) -> None:
    patches = ctx.services.setdefault(StepFunctionsState, StepFunctionsState())
    if patches.active:
        return
    original: Any = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: StepFunctionsParserBackend, arn: str, name: Any = None, *args: Any, **kw: Any
    ) -> Any:
        return original(self, arn, name or str(uuid.uuid4()), *args, **kw)

    patches.replace(StepFunctionsParserBackend, "start_execution", start_execution)


def uninstall() -> None:
    ctx = context.running()
    patches = ctx.services.pop(StepFunctionsState, None) if ctx is not None else None
    if patches is not None:
        patches.restore()
