"""Model tests: pre-training checks on the data, post-training checks on the model, drift baselines.

Runs inside SageMaker jobs (the scikit-learn container) as well as locally, so, like
:mod:`mlcycle.modeling`, it depends only on numpy, pandas and scikit-learn: the problem and the test
settings arrive as the plain JSON dicts of :class:`mlcycle.config.ProblemConfig` and
:class:`mlcycle.config.ModelTestsSettings`. Every check yields a :class:`CheckResult`; a :class:`Report`
collects them and serializes to JSON.
"""

from mlcycle.quality.baselines import feature_baselines
from mlcycle.quality.post_training import ChampionBasis, post_training_tests
from mlcycle.quality.pre_training import pre_training_tests
from mlcycle.quality.report import CheckResult, ModelTestsFailed, Report

__all__ = [
    "ChampionBasis",
    "CheckResult",
    "ModelTestsFailed",
    "Report",
    "feature_baselines",
    "post_training_tests",
    "pre_training_tests",
]
