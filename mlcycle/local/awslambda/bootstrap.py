"""The runtime inside one Lambda execution environment of the embedded AWS: a child process per environment.

Run as a script (``python -I bootstrap.py CODE_DIR HANDLER``), never imported: it uses only the standard
library, so nothing of the checkout is loaded before the function's code. As Lambda's Python runtime does,
it puts the function's unzipped code first on ``sys.path`` (``/var/task``), imports the handler in an
init phase that does not count against the function's timeout (an import failure is then reported on
every invocation, as ``Runtime.ImportModuleError``), and serves invocations one at a time, keeping module
state between them (a warm environment).

The protocol with :mod:`mlcycle.local.awslambda.environments`: one JSON request per line on stdin; what the
handler prints and logs goes to stdout, as it goes to CloudWatch Logs in Lambda; after each invocation the
runtime flushes both streams and writes one line ``RESULT_MARK + json`` to stdout, so the parent knows that
every line before it belongs to that invocation.

The venv's site-packages stand for Lambda's runtime (boto3) and the function's layers (Powertools, pandas):
the checkout's editable install is removed from the import system, so a module missing from the bundle
fails here as it would in AWS.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import traceback
from typing import Any

RESULT_MARK = "\x1emlcycle-lambda-result "


class Context:
    """The context object AWS passes to a Python handler (the attributes Powertools reads)."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.function_name: str = request["function_name"]
        self.function_version: str = request["function_version"]
        self.invoked_function_arn: str = request["invoked_function_arn"]
        self.memory_limit_in_mb: int = int(request["memory_limit_in_mb"])
        self.aws_request_id: str = request["aws_request_id"]
        self.log_group_name: str = request["log_group_name"]
        self.log_stream_name: str = request["log_stream_name"]
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline = time.monotonic() + float(request["remaining_ms"]) / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _isolate(code_dir: str) -> None:
    """``sys.path`` as in Lambda: the function's code first, then the runtime's packages; no checkout."""
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
    sys.path_importer_cache.clear()
    sys.path.insert(0, code_dir)
    os.chdir(code_dir)


def _load(handler: str) -> Any:
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise ImportError(f"Handler {handler!r} is not of the form 'module.function'")
    module = importlib.import_module(module_name)
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ImportError(f"Handler {handler!r}: module {module_name!r} has no callable {attribute!r}")
    return function


def _error(error_type: str, message: str, exc: BaseException | None = None) -> dict[str, Any]:
    stack = [line.rstrip("\n") for line in traceback.format_tb(exc.__traceback__)] if exc else []
    return {"errorMessage": message, "errorType": error_type, "stackTrace": stack}


def _answer(result: dict[str, Any]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, (RESULT_MARK + json.dumps(result) + "\n").encode("utf-8"))


def _invoke(function: Any, request: dict[str, Any]) -> dict[str, Any]:
    try:
        output = function(request["event"], Context(request))
    except Exception as exc:  # every handler failure becomes a FunctionError, as in AWS
        print(f"[ERROR] {type(exc).__name__}: {exc}", file=sys.stderr)
        return {"errored": True, "payload": _error(type(exc).__name__, str(exc), exc)}
    try:
        return {"errored": False, "payload": json.loads(json.dumps(output))}
    except (TypeError, ValueError) as exc:
        return {
            "errored": True,
            "payload": _error("Runtime.MarshalError", f"Unable to marshal response: {exc}"),
        }


def _init(handler: str) -> tuple[Any, dict[str, Any] | None]:
    """The init phase: import the handler's module (its module-level code runs here, once)."""
    try:
        return _load(handler), None
    except Exception as exc:
        message = f"Unable to import module for handler {handler!r}: {type(exc).__name__}: {exc}"
        print(f"[ERROR] {message}", file=sys.stderr)
        return None, _error("Runtime.ImportModuleError", message, exc)


def main(code_dir: str, handler: str) -> None:
    _isolate(code_dir)
    # Lambda's runtime logs through the root logger at WARNING unless the function configures it.
    logging.basicConfig(stream=sys.stdout, format="[%(levelname)s] %(name)s: %(message)s")
    function, init_error = _init(handler)
    _answer({"init": True})  # the init phase is over: its output belongs to the first invocation's log
    for line in sys.stdin:
        request = json.loads(line)
        if init_error is not None:
            _answer({"errored": True, "payload": init_error})
            continue
        _answer(_invoke(function, request))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
