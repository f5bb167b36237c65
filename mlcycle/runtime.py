"""What a Lambda function knows about its deployment: its environment and the bundled settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mlcycle.config import BUNDLED_CONFIG_FILE, Settings, settings_from_json
from mlcycle.names import Env

#: Environment variable name by the field that holds it.
_FIELDS = {variable.field: variable for variable in Env}


class MissingEnvironmentError(RuntimeError):
    """A function lacks a variable or its settings: a deployment mistake, not a data problem."""


class FunctionEnvironment(BaseModel):
    """The variables one handler needs: subclass it with a field per variable (named after
    :class:`mlcycle.names.Env`'s ``field``): ``str`` when required, ``str | None = None`` when optional.

    :func:`environment` parses it at the start of every invocation, so a function deployed without a
    variable fails on its first request with a message naming the variable, before touching any data.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Where the handler lives, for the error message.
    handler: ClassVar[str] = "a function"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [name for name in cls.__annotations__ if not name.startswith("_") and name not in _FIELDS]
        if unknown:
            raise TypeError(f"{cls.__name__}: {unknown} are not variables of mlcycle.names.Env")

    @classmethod
    def variables(cls) -> dict[str, bool]:
        """``{variable name: required}`` for every variable the model reads."""
        return {str(_FIELDS[name]): field.is_required() for name, field in cls.model_fields.items()}


E = TypeVar("E", bound=FunctionEnvironment)


def environment(model: type[E]) -> E:
    """Parse ``model`` from ``os.environ``; raise naming every missing variable.

    Read per call, not cached: on the embedded AWS several functions share one process.
    """
    names = {name: str(_FIELDS[name]) for name in model.model_fields}
    values = {name: os.environ[variable] for name, variable in names.items() if variable in os.environ}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        missing = sorted(names[str(e["loc"][0])] for e in exc.errors() if e["type"] == "missing")
        raise MissingEnvironmentError(
            f"{model.handler} is deployed without {', '.join(missing) or 'valid'} environment variable(s); "
            "the CDK app sets them (infra/env.py): redeploy, or set them when running the handler by hand"
        ) from exc


#: Settings for the handlers running in this context, when a runtime supplies them (the embedded AWS
#: reads them from the function's deployed code); otherwise the copy bundled beside the package.
_SUPPLIED: ContextVar[Settings | None] = ContextVar("mlcycle_settings", default=None)


@contextmanager
def supplied_settings(settings: Settings | None) -> Iterator[None]:
    """Run handlers in this block with ``settings`` (what the function's bundle would hold); None
    changes nothing."""
    token = _SUPPLIED.set(settings)
    try:
        yield
    finally:
        _SUPPLIED.reset(token)


def settings() -> Settings:
    """The settings bundled with the function's code at synth (``mlcycle_config.json`` at the asset root)."""
    supplied = _SUPPLIED.get()
    return supplied if supplied is not None else _bundled()


@cache
def _bundled() -> Settings:
    bundled = Path(__file__).resolve().parent.parent / BUNDLED_CONFIG_FILE
    if not bundled.exists():
        raise MissingEnvironmentError(
            f"no {BUNDLED_CONFIG_FILE} beside the mlcycle package: the CDK app bundles one with the "
            "function's code; to run a handler from source, wrap it in mlcycle.runtime.supplied_settings()"
        )
    return settings_from_json(bundled.read_text(encoding="utf-8"))
