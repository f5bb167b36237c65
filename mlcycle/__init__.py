"""mlcycle: the whole machine-learning cycle as one serverless AWS bundle.

The domain library. Lambda handlers (``functions/``), SageMaker job scripts (``pipelines/``),
the CDK app (``infra/``), the CLI and the embedded AWS (``mlcycle.local``) are thin shells over it.
"""

__version__ = "0.1.0"
