"""Executions that outlive a restart of the embedded AWS.

In AWS an execution never notices that the service under it restarted. moto runs each execution on an
interpreter thread, which cannot be saved, so a restart does what a crash-safe workflow engine does:

* ``freeze`` (before the snapshot): each running execution's history is copied and its interpreter is
  stopped at once, so the old thread takes no further step (no Catch path, no failure event);
* the snapshot keeps every execution with its history (:class:`FrozenWorker` stands in for the thread);
* ``resume`` (after the restart): each execution that was running starts again on a new interpreter at
  the top-level state it was in, with that state's input, and its history goes on from the frozen events.

The state it was in therefore runs again from its start: a task is invoked once more (Step Functions'
own retries have the same at-least-once effect, so our tasks are idempotent) and a Wait waits its full
time again. Our definitions use JSONPath only: the data between top-level states is all there is to carry
(a JSONata ``Assign`` variable would be lost; ``resume`` refuses such a definition rather than guess).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: The error and cause an interrupted execution's old interpreter is stopped with (never shown: the
#: snapshot keeps the execution as it was before, running).
RESTART_ERROR = "Local.Restart"
RESTART_CAUSE = "the embedded AWS is restarting; the execution resumes after it"


@dataclass(frozen=True)
class ResumePoint:
    state: str
    input: Any


def resume_point(
    definition: dict[str, Any], history: list[dict[str, Any]], execution_input: Any
) -> ResumePoint:
    """Where an execution interrupted after ``history`` goes on: the top-level state it was in, with the
    input that state was entered with; after a state that exited, the next state with its output (a
    Choice, which names no ``Next``, is evaluated again from its input: it decides the same way)."""
    top = definition["States"]
    point = ResumePoint(definition["StartAt"], execution_input)
    for event in history:
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        if entered and entered["name"] in top:
            point = ResumePoint(entered["name"], json.loads(entered.get("input") or "{}"))
        elif exited and exited["name"] in top and top[exited["name"]].get("Next"):
            point = ResumePoint(top[exited["name"]]["Next"], json.loads(exited.get("output") or "{}"))
    return point


class _FrozenHistory:
    """What moto asks of a finished interpreter's environment: its history (and its map runs: none)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.event_manager = self
        self.map_run_record_pool_manager = self

    def get_event_history(self) -> list[dict[str, Any]]:
        return list(self.events)

    def get(self, _arn: str) -> None:
        return None

    def get_all(self) -> list[Any]:
        return []


class FrozenWorker:
    """Stands in for an execution's interpreter in a snapshot: its history, and nothing that runs."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.env = _FrozenHistory(events)

    def stop(self, stop_date: datetime.datetime, error: str | None, cause: str | None) -> None:
        """An execution stopped while frozen has no interpreter left to tell."""

    def __reduce__(self) -> tuple[Any, ...]:
        return FrozenWorker, (self.env.events,)


def _history(worker: Any) -> list[dict[str, Any]]:
    env = getattr(worker, "env", None)
    return [] if env is None else list(env.event_manager.get_event_history())


def _executions() -> Iterator[Any]:
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backend: Any
    for _account, _region, backend in stepfunctions_parser_backends.iter_backends():
        for machine in backend.state_machines:
            yield from machine.executions


def freeze() -> dict[str, list[dict[str, Any]]]:
    """Stop every running execution's interpreter where it is; return their histories, by execution ARN.
    The snapshot must be taken with :func:`frozen_reducer` so that they are saved as running."""
    from moto.stepfunctions.parser.api import ExecutionStatus

    frozen: dict[str, list[dict[str, Any]]] = {}
    now = datetime.datetime.now(tz=datetime.UTC)
    for execution in list(_executions()):
        if execution.exec_status == ExecutionStatus.RUNNING and execution.exec_worker is not None:
            frozen[execution.exec_arn] = _history(execution.exec_worker)
            if execution.exec_worker.env is not None:
                execution.stop(now, RESTART_ERROR, RESTART_CAUSE)
    return frozen


def reducers(frozen: dict[str, list[dict[str, Any]]]) -> dict[type, Any]:
    """How the snapshot saves executions: their interpreter as its history; those ``freeze`` stopped as
    they were when frozen (running, no end), whatever the old thread did since."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import Execution
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    def execution(obj: Any) -> Any:
        state = dict(vars(obj))
        if obj.exec_arn in frozen:
            state.update(
                exec_status=ExecutionStatus.RUNNING,
                exec_worker=FrozenWorker(frozen[obj.exec_arn]),
                stop_date=None,
                output=None,
                error=None,
                cause=None,
            )
        return _rebuild, (type(obj), state)

    def worker(obj: Any) -> Any:
        return FrozenWorker, (_history(obj),)

    return {Execution: execution, ExecutionWorker: worker}


def _rebuild(kind: Any, state: dict[str, Any]) -> Any:
    obj = kind.__new__(kind)
    obj.__dict__.update(state)
    return obj


def resume() -> list[str]:
    """Start again every execution a snapshot kept as running; return their ARNs."""
    from moto.stepfunctions.parser.api import ExecutionStatus

    resumed = []
    for execution in list(_executions()):
        frozen = isinstance(execution.exec_worker, FrozenWorker)
        if execution.exec_status == ExecutionStatus.RUNNING and frozen:
            _resume(execution)
            resumed.append(execution.exec_arn)
    return resumed


def _resume(execution: Any) -> None:
    from moto.stepfunctions.parser.asl.eval.evaluation_details import EvaluationDetails

    definition = json.loads(execution.state_machine.definition)
    if "Assign" in execution.state_machine.definition or definition.get("QueryLanguage") == "JSONata":
        raise NotImplementedError(
            f"{execution.exec_arn}: resuming a definition with variables or JSONata is not supported"
        )
    history = execution.exec_worker.env.events
    point = resume_point(definition, history, execution.input_data)
    definition["StartAt"] = point.state
    worker = _resumed_worker_class()(
        evaluation_details=EvaluationDetails(
            aws_execution_details=execution._get_start_aws_execution_details(),
            execution_details=execution.get_start_execution_details(),
            state_machine_details=execution.get_start_state_machine_details(),
        ),
        exec_comm=execution._get_start_execution_worker_comm(),
        cloud_watch_logging_session=execution._cloud_watch_logging_session,
        activity_store=execution._activity_store,
    )
    worker.resume_from(json.dumps(definition), history, point.input)
    execution.exec_worker = worker
    worker.start()


def _resumed_worker_class() -> type:
    """moto's interpreter, started at a chosen state with a chosen input and an existing history."""
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    class ResumedWorker(ExecutionWorker):  # type: ignore[misc]
        def resume_from(self, definition: str, history: list[dict[str, Any]], state_input: Any) -> None:
            self._definition, self._history, self._input = definition, history, state_input

        def _get_evaluation_entrypoint(self) -> Any:
            return AmazonStateLanguageParser.parse(self._definition)[0]

        def _execution_logic(self) -> None:
            program = self._get_evaluation_entrypoint()
            self.env = env = self._get_evaluation_environment()
            last = max((int(e["id"]) for e in self._history), default=0)
            events: list[Any] = env.event_manager._history_event_list
            events.extend(self._history)
            env.event_manager._event_id_gen._next_id = last + 1
            env.event_history_context.integrate(EventHistoryContext(previous_event_id=last))
            env.states.reset(input_value=self._input)
            program.eval(env)
            self._execution_communication.terminated()

    return ResumedWorker
