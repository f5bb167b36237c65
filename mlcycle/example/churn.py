"""Customer churn: the example problem, with a seeded generator that can also drift.

The label follows a known logistic model of the features, so a trained model has real signal to find
(ROC AUC around 0.85 on clean data). ``drift`` in [0, 1] moves the feature distributions (covariate drift)
and, above 0.5, also changes how features relate to the label (concept drift), for the monitors of later
issues.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mlcycle.config import (
    ColumnSpec,
    DatasetContract,
    DirectionalCheck,
    FeatureSpec,
    FeatureViewSpec,
    InvarianceCheck,
    ModelSpec,
    ModelTestsSettings,
    ProblemConfig,
)

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENTS = ("card", "bank-transfer", "electronic-check", "mailed-check")
REGIONS = ("north", "south", "east", "west")
FEATURES = (
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "age",
    "contract",
    "payment_method",
    "region",
)


def contract() -> DatasetContract:
    return DatasetContract(
        name="churn",
        key="customer_id",
        event_time="event_time",
        columns=(
            ColumnSpec(name="customer_id", type="string"),
            ColumnSpec(name="event_time", type="timestamp"),
            ColumnSpec(name="tenure_months", type="int", min=0, max=120),
            ColumnSpec(name="monthly_charges", type="float", min=0, max=500),
            ColumnSpec(name="support_calls", type="int", min=0, max=50),
            ColumnSpec(name="age", type="int", min=18, max=110, nullable=True),
            ColumnSpec(name="contract", type="string", categories=CONTRACTS),
            ColumnSpec(name="payment_method", type="string", categories=PAYMENTS),
            ColumnSpec(name="region", type="string", categories=REGIONS),
            ColumnSpec(name="churned", type="int", min=0, max=1),
        ),
    )


def default_problem() -> ProblemConfig:
    return ProblemConfig(
        task="classification",
        dataset=contract(),
        target="churned",
        features=FEATURES,
        model=ModelSpec(
            family="hist_gradient_boosting",
            hyperparameters={"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15},
        ),
        primary_metric="roc_auc",
    )


def default_feature_views() -> tuple[FeatureViewSpec, ...]:
    """The example's feature views: slow-moving profile attributes and faster-moving activity."""
    keys, ts = ("customer_id",), "event_time"
    return (
        FeatureViewSpec(
            name="customer_profile",
            entity_keys=keys,
            event_timestamp=ts,
            features=(
                FeatureSpec(name="tenure_months", type="int"),
                FeatureSpec(name="age", type="int"),
                FeatureSpec(name="contract", type="string"),
                FeatureSpec(name="region", type="string"),
            ),
            ttl_seconds=365 * 86_400,
            source="churn",
        ),
        FeatureViewSpec(
            name="customer_activity",
            entity_keys=keys,
            event_timestamp=ts,
            features=(
                FeatureSpec(name="monthly_charges", type="float"),
                FeatureSpec(name="support_calls", type="int"),
                FeatureSpec(name="payment_method", type="string"),
            ),
            ttl_seconds=30 * 86_400,
            source="churn",
        ),
    )


def model_tests() -> ModelTestsSettings:
    """Model tests the example passes: its generator ignores ``region`` (invariance, and the sensitive
    attribute) and raises churn with each support call (directional)."""
    # Gaps are wider than the generic defaults: ~250 test rows a region leave ~0.03 of sampling noise on
    # a positive rate and ~0.06 on a recall, and a gap is the range over four regions.
    return ModelTestsSettings(
        invariance=(InvarianceCheck(feature="region", values=REGIONS, max_violation_fraction=0.1),),
        directional=(DirectionalCheck(feature="support_calls", delta=2, direction="increase"),),
        sensitive_attribute="region",
        max_positive_rate_difference=0.15,
        max_recall_difference=0.25,
    )


def settings_document() -> dict[str, object]:
    """The example's part of a settings document: its problem, model tests and feature views.

    A settings file that declares no ``[problem]`` is laid over this (mlcycle.application.settings).
    """
    return {
        "problem": default_problem().model_dump(mode="json"),
        "model_tests": model_tests().model_dump(mode="json"),
        "feature_views": [view.model_dump(mode="json") for view in default_feature_views()],
    }


def generate(
    n: int,
    *,
    seed: int = 0,
    drift: float = 0.0,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    days: int = 30,
) -> pd.DataFrame:
    """``n`` customers' rows; the same ``seed`` and arguments give the same frame."""
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be within [0, 1], got {drift}")
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0 * (1 - 0.5 * drift), n).clip(0, 120).round().astype(int)
    charges = (rng.normal(65 + 40 * drift, 25, n)).clip(18, 400).round(2)
    calls = rng.poisson(1.5 + 3 * drift, n).clip(0, 50)
    age = rng.normal(45, 15, n).clip(18, 95).round()
    contract_p = np.array([0.5 + 0.3 * drift, 0.3 - 0.15 * drift, 0.2 - 0.15 * drift])
    contracts = rng.choice(CONTRACTS, n, p=contract_p / contract_p.sum())
    payments = rng.choice(PAYMENTS, n)
    regions = rng.choice(REGIONS, n)

    logit = (
        -1.0
        - 0.05 * tenure
        + 0.025 * (charges - 65)
        + 0.45 * calls
        - 0.01 * (age - 45)
        + np.select([contracts == "month-to-month", contracts == "one-year"], [1.2, 0.0], -1.2)
        + np.where(payments == "electronic-check", 0.6, 0.0)
    )
    if drift > 0.5:  # concept drift: tenure's effect flips sign as drift grows (long-standing customers
        # start to leave: a rival's loyalty offer), while support calls keep raising churn
        logit += (drift - 0.5) * (0.3 * (tenure - 12) - 4.0)
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)

    offsets = rng.integers(0, days * 86_400, n)
    event_time = pd.to_datetime(start) + pd.to_timedelta(np.sort(offsets), unit="s")
    age_col = pd.array(age.astype(int), dtype="Int64")
    age_col[rng.random(n) < 0.02] = pd.NA  # age is optional in the contract
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed:03d}-{i:07d}" for i in range(n)],
            "event_time": event_time,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "age": age_col,
            "contract": contracts,
            "payment_method": payments,
            "region": regions,
            "churned": churned,
        }
    )


#: Rows of the bundled upload that break the contract on purpose, so the demo shows the quarantine.
BAD_ROWS = {
    7: ("tenure_months", "twelve"),
    19: ("contract", "weekly"),
    23: ("monthly_charges", "-3.5"),
}


def bundled_frame(rows: int = 5000, seed: int = 42) -> pd.DataFrame:
    """The example upload that ships as ``churn.csv``: generated rows, a few of them broken."""
    frame = generate(rows, seed=seed).astype(
        {"tenure_months": object, "monthly_charges": object, "contract": object}
    )
    for row, (column, value) in BAD_ROWS.items():
        frame.loc[row, column] = value
    return frame
