"""The names in mlcycle.names tie infra to the code that reads them: each set is checked from both ends."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import pytest

from mlcycle import runtime
from mlcycle.application.platform import Platform
from mlcycle.names import EVENT_SOURCE, Env, EventType, Output
from tests.infra.synthesized import Synthesized


def _handlers(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        str(fn["Properties"]["Handler"]): fn["Properties"]
        for fn in synthesized.resources("AWS::Lambda::Function").values()
        if str(fn["Properties"].get("Handler", "")).startswith("functions.")
    }


def _environment_model(handler: str) -> type[runtime.FunctionEnvironment] | None:
    module_name, _, function = handler.rpartition(".")
    module = importlib.import_module(module_name)
    per_function: dict[str, type[runtime.FunctionEnvironment]] = getattr(module, "ENVIRONMENTS", {})
    return per_function.get(function) or getattr(module, "Environment", None)


def test_every_function_gets_exactly_the_variables_its_handler_reads(synthesized: Synthesized) -> None:
    for handler, props in _handlers(synthesized).items():
        given = set(props.get("Environment", {}).get("Variables", {})) - {Env.SERVICE_NAME}
        model = _environment_model(handler)
        wanted = model.variables() if model else {}
        # GIVEN what the CDK app sets and what the handler's environment model parses
        # THEN every required variable is set (no function fails at cold start) ...
        assert {name for name, required in wanted.items() if required} <= given, handler
        # ... AND nothing is set that the handler never reads
        assert given <= set(wanted), handler


def test_a_missing_variable_fails_fast_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.report_failure import Environment

    monkeypatch.setenv(Env.ARTIFACTS_BUCKET, "artifacts")
    monkeypatch.delenv(Env.EVENT_BUS, raising=False)
    message = r"functions\.report_failure.*MLCYCLE_EVENT_BUS"
    with pytest.raises(runtime.MissingEnvironmentError, match=message):
        runtime.environment(Environment)
    monkeypatch.setenv(Env.EVENT_BUS, "bus")
    assert runtime.environment(Environment).event_bus == "bus"


def test_an_environment_model_may_only_name_known_variables() -> None:
    with pytest.raises(TypeError, match="not variables"):

        class _Typo(runtime.FunctionEnvironment):
            curated_bucktet: str


def test_stack_outputs_are_what_the_platform_reads(synthesized: Synthesized) -> None:
    outputs = set(synthesized.template.to_json()["Outputs"])
    assert outputs == {str(o) for o in Output}
    assert {f.name for f in dataclasses.fields(Platform)} == {o.field for o in Output}


def test_rules_on_our_bus_match_our_event_types(synthesized: Synthesized) -> None:
    ours = [
        rule["Properties"]["EventPattern"]
        for rule in synthesized.resources("AWS::Events::Rule").values()
        if rule["Properties"].get("EventPattern", {}).get("source") == [EVENT_SOURCE]
    ]
    assert ours, "no rule listens to our own events"
    for pattern in ours:
        assert set(pattern["detail-type"]) <= {str(t) for t in EventType}
