"""The SageMaker scikit-learn container's serving app, for bench/serving.py (runs in the peer's venv).

What the container's ``sagemaker_sklearn_container.serving:main`` does for a single-model endpoint, with
the container's own serving library (sagemaker-containers): import the user module named by
``SAGEMAKER_PROGRAM`` from ``SAGEMAKER_SUBMIT_DIRECTORY``, wrap its ``model_fn`` and ``transform_fn`` in
the library's ``Transformer``, load the model once per worker, and serve it with the library's Flask
``Worker`` (``GET /ping``, ``POST /invocations``). gunicorn runs it with gevent workers, as the
library's ``server.start`` launches it.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from sagemaker_containers.beta.framework import env, transformer, worker

#: The Flask app, built on a worker's first request as the container builds it (after gunicorn forks).
_APP: dict[str, Any] = {}


def main(environ: Any, start_response: Any) -> Any:
    if "app" not in _APP:
        serving = env.ServingEnv()
        sys.path.insert(0, os.environ["SAGEMAKER_SUBMIT_DIRECTORY"])
        user = importlib.import_module(serving.module_name)
        hooks = {name: getattr(user, name) for name in ("model_fn", "transform_fn") if hasattr(user, name)}
        served = transformer.Transformer(**hooks)
        served.initialize()
        _APP["app"] = worker.Worker(transform_fn=served.transform, module_name=serving.module_name)
    return _APP["app"](environ, start_response)
