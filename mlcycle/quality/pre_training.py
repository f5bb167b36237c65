"""Pre-training tests: is this training set fit to learn from? Run by the training job before fitting."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlcycle.quality.report import CheckResult, Report

Problem = dict[str, Any]
Tests = dict[str, Any]
_NUMERIC = ("int", "float", "bool")


def schema_check(train: pd.DataFrame, test: pd.DataFrame, problem: Problem) -> CheckResult:
    """Features and target present on both sides, numeric columns numeric, categories as declared."""
    columns = {c["name"]: c for c in problem["dataset"]["columns"]}
    wanted = [*problem["features"], problem["target"]]
    problems = [
        f"{side} lacks {c!r}" for side, f in (("train", train), ("test", test)) for c in wanted if c not in f
    ]
    for name in wanted:
        if name in train:
            problems += _column_problems(train[name], columns[name])
    detail = "; ".join(problems) or f"{len(problem['features'])} features and the target match the contract"
    return CheckResult("schema", not problems, float(len(problems)), 0.0, detail)


def _column_problems(values: pd.Series, spec: dict[str, Any]) -> list[str]:
    present = values.dropna()
    if spec["type"] in _NUMERIC:
        bad = int(pd.to_numeric(present, errors="coerce").isna().sum())
        return [f"{spec['name']!r}: {bad} non-numeric values"] if bad else []
    categories = spec.get("categories")
    if categories:
        unknown = sorted(set(present.astype(str)) - set(categories))
        return [f"{spec['name']!r}: values outside the contract {unknown[:5]}"] if unknown else []
    return []


def min_rows_check(train: pd.DataFrame, tests: Tests) -> CheckResult:
    need = int(tests["min_rows"])
    detail = f"{len(train)} training rows (minimum {need})"
    return CheckResult("min_rows", len(train) >= need, float(len(train)), float(need), detail)


def label_balance_check(train: pd.DataFrame, problem: Problem, tests: Tests) -> CheckResult:
    """Classification: the rarest class must be common enough to learn; one class is nothing to learn."""
    target = problem["target"]
    if problem["task"] != "classification":
        return CheckResult.skip("label_balance", "regression target")
    if target not in train or train.empty:
        return CheckResult("label_balance", False, None, None, f"no {target!r} values to judge")
    shares = train[target].value_counts(normalize=True)
    need = float(tests["min_minority_fraction"])
    if len(shares) < 2:
        return CheckResult("label_balance", False, 0.0, need, f"target {target!r} has a single class")
    rarest = float(shares.min())
    detail = f"rarest class {shares.idxmin()!r} is {rarest:.3f} of the rows (minimum {need})"
    return CheckResult("label_balance", rarest >= need, rarest, need, detail)


def leakage_check(train: pd.DataFrame, problem: Problem, tests: Tests) -> CheckResult:
    """No feature may carry a timestamp later than its row's event: that value was not known yet.

    Generic over the columns named ``{view}{suffix}`` that point-in-time joins add (e.g.
    ``customer_activity__event_time``); a training set without them has nothing to check.
    """
    event_time = problem["dataset"].get("event_time")
    suffix = tests["feature_time_suffix"]
    stamped = [c for c in train.columns if c.endswith(suffix) and c != event_time]
    if event_time is None or event_time not in train or not stamped:
        return CheckResult.skip("no_future_features", "no feature timestamp columns")
    events = pd.to_datetime(train[event_time], utc=True)
    late = {c: int((pd.to_datetime(train[c], utc=True) > events).sum()) for c in stamped}
    total = sum(late.values())
    found = ", ".join(f"{c}: {n} rows" for c, n in late.items() if n)
    detail = (
        f"feature values from after the event ({found})" if total else f"{len(stamped)} timestamp columns"
    )
    return CheckResult("no_future_features", total == 0, float(total), 0.0, detail)


def entity_overlap_check(train: pd.DataFrame, test: pd.DataFrame, problem: Problem) -> CheckResult:
    """An entity on both sides lets the model be scored on what it memorised."""
    key = problem["dataset"].get("key")
    if key is None or key not in train or key not in test:
        return CheckResult.skip("entity_overlap", "no entity key in the contract or the data")
    shared = set(train[key].dropna().astype(str)) & set(test[key].dropna().astype(str))
    sample = sorted(shared)[:3]
    detail = f"{len(shared)} {key} values in both train and test {sample}" if shared else f"no {key} in both"
    return CheckResult("entity_overlap", not shared, float(len(shared)), 0.0, detail)


def pre_training_tests(train: pd.DataFrame, test: pd.DataFrame, problem: Problem, tests: Tests) -> Report:
    return Report(
        "pre_training",
        [
            schema_check(train, test, problem),
            min_rows_check(train, tests),
            label_balance_check(train, problem, tests),
            leakage_check(train, problem, tests),
            entity_overlap_check(train, test, problem),
        ],
    )


#: What a training job checks when it is given no settings (``ModelTestsSettings`` needs pydantic, which
#: the training container lacks; the pipeline always passes the deployment's settings).
DEFAULT_TESTS: Tests = {"min_rows": 50, "min_minority_fraction": 0.0, "feature_time_suffix": "__event_time"}
