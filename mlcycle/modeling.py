"""Model building and evaluation with scikit-learn.

Runs inside SageMaker jobs (the scikit-learn 1.9 container) and locally, so it depends only on numpy,
pandas, scikit-learn and joblib: no pydantic, no boto3. The problem arrives as the plain JSON dict of
:class:`mlcycle.config.ProblemConfig`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

Problem = dict[str, Any]

_ESTIMATORS: dict[tuple[str, str], Any] = {
    ("hist_gradient_boosting", "classification"): HistGradientBoostingClassifier,
    ("hist_gradient_boosting", "regression"): HistGradientBoostingRegressor,
    ("random_forest", "classification"): RandomForestClassifier,
    ("random_forest", "regression"): RandomForestRegressor,
    ("logistic_regression", "classification"): LogisticRegression,
    ("logistic_regression", "regression"): LinearRegression,
}


class TrainingDataError(ValueError):
    """The training data cannot produce a model (the reason goes to the job's failure file)."""


def feature_schema(problem: Problem) -> dict[str, str]:
    """Feature name -> ``numeric`` or ``categorical``, in the order serving expects them."""
    types = {c["name"]: c["type"] for c in problem["dataset"]["columns"]}
    return {
        f: ("numeric" if types[f] in ("int", "float", "bool") else "categorical") for f in problem["features"]
    }


def build_pipeline(problem: Problem) -> Pipeline:
    schema = feature_schema(problem)
    numeric = [f for f, kind in schema.items() if kind == "numeric"]
    categorical = [f for f, kind in schema.items() if kind == "categorical"]
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )
    model = problem.get("model", {})
    estimator = _ESTIMATORS[(model.get("family", "hist_gradient_boosting"), problem["task"])]
    params = dict(model.get("hyperparameters", {}))
    if "random_state" in estimator().get_params():
        params.setdefault("random_state", problem.get("seed", 42))
    return Pipeline([("preprocess", pre), ("model", estimator(**params))])


def features_frame(frame: pd.DataFrame, problem: Problem) -> pd.DataFrame:
    """The feature columns with plain dtypes (nullable pandas types become float / object)."""
    schema = feature_schema(problem)
    out = {}
    for name, kind in schema.items():
        col = frame[name]
        out[name] = (
            pd.to_numeric(col, errors="coerce").astype("float64") if kind == "numeric" else col.astype(object)
        )
    return pd.DataFrame(out)


def check_training_data(train: pd.DataFrame, problem: Problem, min_rows: int = 50) -> None:
    missing = [c for c in (*problem["features"], problem["target"]) if c not in train.columns]
    if missing:
        raise TrainingDataError(f"training set lacks columns {missing}")
    if len(train) < min_rows:
        raise TrainingDataError(f"training set has {len(train)} rows, fewer than the minimum {min_rows}")
    if problem["task"] == "classification" and train[problem["target"]].nunique() < 2:
        raise TrainingDataError(f"target {problem['target']!r} has a single class: nothing to learn")


def train(train_frame: pd.DataFrame, problem: Problem) -> Pipeline:
    check_training_data(train_frame, problem)
    pipeline = build_pipeline(problem)
    target = train_frame[problem["target"]].astype(
        "int64" if problem["task"] == "classification" else "float64"
    )
    pipeline.fit(features_frame(train_frame, problem), target.to_numpy())
    return pipeline


def evaluate(pipeline: Pipeline, test: pd.DataFrame, problem: Problem) -> dict[str, float]:
    """Metrics on held-out rows; the set depends on the task."""
    x = features_frame(test, problem)
    y = test[problem["target"]].to_numpy()
    pred = pipeline.predict(x)
    if problem["task"] == "regression":
        return metrics_of(y, pred, problem)
    scores = pipeline.predict_proba(x)
    binary = scores.shape[1] == 2
    return metrics_of(y, pred, problem, positive=scores[:, 1] if binary else None, binary=binary)


def metrics_of(
    y: np.ndarray,
    pred: np.ndarray,
    problem: Problem,
    *,
    positive: np.ndarray | None = None,
    binary: bool = False,
) -> dict[str, float]:
    """The metrics :func:`evaluate` reports, from answers given elsewhere too (a serving model's captured
    predictions): ``positive`` is a binary classifier's probability of the positive class (the larger
    label), without which ``roc_auc`` and ``log_loss`` are left out; ``binary`` picks the F1 average."""
    if problem["task"] == "regression":
        return {
            "r2": float(metrics.r2_score(y, pred)),
            "rmse": float(np.sqrt(metrics.mean_squared_error(y, pred))),
            "mae": float(metrics.mean_absolute_error(y, pred)),
            "rows": float(len(y)),
        }
    y = np.asarray(y).astype("int64")
    result = {
        "accuracy": float(metrics.accuracy_score(y, pred)),
        "f1": float(metrics.f1_score(y, pred, average="binary" if binary else "macro")),
        "rows": float(len(y)),
    }
    if binary and positive is not None and len(np.unique(y)) == 2:
        result["roc_auc"] = float(metrics.roc_auc_score(y, positive))
        result["log_loss"] = float(metrics.log_loss(y, positive))
    return result
