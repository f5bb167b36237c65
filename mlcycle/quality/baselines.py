"""Baseline statistics for drift: per-feature sketches of the training set, stored with the model.

Numeric features: quantiles (decile edges by default) with the training rows' counts between them, plus
moments and the missing fraction; the monitors bin serving data on the same edges (PSI, KS). Categorical
features: value frequencies, the long tail folded into ``OTHER``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlcycle import modeling

FORMAT_VERSION = 1
OTHER = "__other__"


def numeric_sketch(values: pd.Series, bins: int) -> dict[str, Any]:
    present = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    sketch: dict[str, Any] = {"type": "numeric", "count": len(values), "missing": _missing(values)}
    if not len(present):
        return sketch
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)))
    counts = np.histogram(present, bins=edges)[0] if len(edges) > 1 else np.array([len(present)])
    return sketch | {
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "max": float(present.max()),
        "quantiles": {
            f"{q:.2f}": float(np.quantile(present, q)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
        },
        "bin_edges": edges.tolist(),
        "bin_counts": counts.astype(int).tolist(),
    }


def categorical_sketch(values: pd.Series, top: int) -> dict[str, Any]:
    shares = values.dropna().astype(str).value_counts(normalize=True)
    frequencies = {str(k): float(v) for k, v in shares.head(top).items()}
    if len(shares) > top:
        frequencies[OTHER] = float(shares.iloc[top:].sum())
    return {
        "type": "categorical",
        "count": len(values),
        "missing": _missing(values),
        "distinct": len(shares),
        "frequencies": frequencies,
    }


def _missing(values: pd.Series) -> float:
    return float(values.isna().mean()) if len(values) else 0.0


def feature_baselines(
    train: pd.DataFrame, problem: dict[str, Any], *, bins: int = 10, top: int = 50
) -> dict[str, Any]:
    """The sketch of every feature (and of the target), computed from the training set."""
    schema = modeling.feature_schema(problem)
    features = {
        name: numeric_sketch(train[name], bins) if kind == "numeric" else categorical_sketch(train[name], top)
        for name, kind in schema.items()
    }
    target = train[problem["target"]]
    target_sketch = (
        categorical_sketch(target, top)
        if problem["task"] == "classification"
        else numeric_sketch(target, bins)
    )
    return {
        "format_version": FORMAT_VERSION,
        "rows": len(train),
        "features": features,
        "target": target_sketch,
    }
