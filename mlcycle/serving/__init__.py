"""The local model server: the SageMaker inference-container contract (``/ping``, ``/invocations``).

``python -m mlcycle.serving.server --model-dir DIR --port P`` serves one extracted ``model.tar.gz`` the way
the SageMaker scikit-learn serving container does. The embedded AWS (``mlcycle.local.sagemaker``) starts
one per endpoint production variant; nothing here talks to AWS.

The package imports nothing on purpose: ``-m mlcycle.serving.server`` would otherwise import the server
module twice (once through the package, once as ``__main__``).
"""
