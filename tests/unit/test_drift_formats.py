"""Model Monitor's files validate against JSON schemas written from AWS's documentation of them.

Sources: "Schema for Statistics (statistics.json file)", "Schema for Constraints (constraints.json file)"
and "Schema for Violations (constraint_violations.json file)" in the SageMaker developer guide
(model-monitor-byoc-statistics, model-monitor-byoc-constraints, model-monitor-interpreting-violations).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import pytest

from mlcycle.monitoring import formats
from mlcycle.monitoring.drift import DriftReport, compare

NUMBER = {"type": "number"}
COMMON = {
    "type": "object",
    "required": ["num_present", "num_missing"],
    "properties": {"num_present": NUMBER, "num_missing": NUMBER},
}
KLL = {
    "type": "object",
    "required": ["buckets", "sketch"],
    "properties": {
        "buckets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["lower_bound", "upper_bound", "count"],
                "properties": {"lower_bound": NUMBER, "upper_bound": NUMBER, "count": NUMBER},
            },
        },
        "sketch": {
            "type": "object",
            "required": ["parameters", "data"],
            "properties": {
                "parameters": {
                    "type": "object",
                    "required": ["c", "k"],
                    "properties": {"c": NUMBER, "k": NUMBER},
                },
                "data": {"type": "array", "items": {"type": "array", "items": NUMBER}},
            },
        },
    },
}
NUMERICAL_STATISTICS = {
    "type": "object",
    "required": ["common"],
    "properties": {
        "common": COMMON,
        "mean": NUMBER,
        "sum": NUMBER,
        "std_dev": NUMBER,
        "min": NUMBER,
        "max": NUMBER,
        "distribution": {"type": "object", "required": ["kll"], "properties": {"kll": KLL}},
    },
    # the moments come together: all of them, or none (a feature with no present value)
    "dependentRequired": {"mean": ["sum", "std_dev", "min", "max", "distribution"]},
}
STRING_STATISTICS = {
    "type": "object",
    "required": ["common", "distinct_count", "distribution"],
    "properties": {
        "common": COMMON,
        "distinct_count": NUMBER,
        "distribution": {
            "type": "object",
            "required": ["categorical"],
            "properties": {
                "categorical": {
                    "type": "object",
                    "required": ["buckets"],
                    "properties": {
                        "buckets": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["value", "count"],
                                "properties": {"value": {"type": "string"}, "count": NUMBER},
                            },
                        }
                    },
                }
            },
        },
    },
}
STATISTICS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "dataset", "features"],
    "properties": {
        "version": {"const": 0},
        "dataset": {"type": "object", "required": ["item_count"], "properties": {"item_count": NUMBER}},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "inferred_type"],
                "properties": {
                    "name": {"type": "string"},
                    "inferred_type": {"enum": ["Fractional", "Integral", "String", "Unknown"]},
                    "numerical_statistics": NUMERICAL_STATISTICS,
                    "string_statistics": STRING_STATISTICS,
                },
                "oneOf": [{"required": ["numerical_statistics"]}, {"required": ["string_statistics"]}],
            },
        },
    },
}
ENABLED = {"enum": ["Enabled", "Disabled"]}
CONSTRAINTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "features"],
    "properties": {
        "version": {"const": 0},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "inferred_type"],
                "properties": {
                    "name": {"type": "string"},
                    "inferred_type": {"enum": ["Integral", "Fractional", "String", "Unknown"]},
                    "completeness": {"type": "number", "minimum": 0, "maximum": 1},
                    "num_constraints": {
                        "type": "object",
                        "properties": {"is_non_negative": {"type": "boolean"}},
                    },
                    "string_constraints": {
                        "type": "object",
                        "properties": {"domains": {"type": "array", "items": {"type": "string"}}},
                    },
                    "monitoringConfigOverrides": {"type": "object"},
                },
            },
        },
        "monitoring_config": {
            "type": "object",
            "properties": {
                "evaluate_constraints": ENABLED,
                "emit_metrics": ENABLED,
                "datatype_check_threshold": NUMBER,
                "domain_content_threshold": NUMBER,
                "distribution_constraints": {
                    "type": "object",
                    "properties": {
                        "perform_comparison": ENABLED,
                        "comparison_threshold": NUMBER,
                        "comparison_method": {"enum": ["Simple", "Robust"]},
                        "categorical_comparison_threshold": NUMBER,
                        "categorical_drift_method": {"enum": ["LInfinity", "ChiSquared"]},
                    },
                },
            },
        },
    },
}
VIOLATIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["violations"],
    "properties": {
        "violations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["feature_name", "constraint_check_type", "description"],
                "additionalProperties": False,
                "properties": {
                    "feature_name": {"type": "string"},
                    "constraint_check_type": {
                        "enum": [
                            "data_type_check",
                            "completeness_check",
                            "baseline_drift_check",
                            "missing_column_check",
                            "extra_column_check",
                            "categorical_values_check",
                        ]
                    },
                    "description": {"type": "string"},
                },
            },
        }
    },
}


def validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    # through JSON text, as a reader of the file would see it (and NaN would not survive allow_nan=False)
    jsonschema.validate(json.loads(json.dumps(document, allow_nan=False)), schema)


def drifted_report() -> tuple[DriftReport, list[str]]:
    rng = np.random.default_rng(0)
    n = 2000
    reference = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.lognormal(10, 1, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "gone": rng.normal(size=n),
            "empty": np.full(n, np.nan),
        }
    )
    current = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n).astype(object),
            "income": rng.lognormal(10.5, 1, n),
            "plan": rng.choice(["basic", "plus", "enterprise"], n),
            "empty": np.full(n, np.nan),
            "extra": rng.normal(size=n),
        }
    )
    current.loc[: n // 2, "income"] = np.nan  # a completeness violation
    current.loc[: n // 4, "age"] = "unknown"  # a data type violation
    schema = {
        "age": "numeric",
        "income": "numeric",
        "plan": "categorical",
        "gone": "numeric",
        "empty": "numeric",
    }
    return compare(reference, current, schema), list(current.columns)  # type: ignore[arg-type]


def test_statistics_json_validates_for_both_sides() -> None:
    report, _ = drifted_report()
    for side in ("reference", "current"):
        document = formats.statistics(report, side)  # type: ignore[arg-type]
        validate(document, STATISTICS_SCHEMA)
    current = formats.statistics(report, "current")
    by_name = {f["name"]: f for f in current["features"]}
    assert current["dataset"]["item_count"] == 2000
    assert by_name["income"]["inferred_type"] == "Fractional"
    assert by_name["plan"]["string_statistics"]["distinct_count"] == 3
    income = by_name["income"]["numerical_statistics"]
    assert income["common"]["num_missing"] == 1001
    assert (
        sum(b["count"] for b in income["distribution"]["kll"]["buckets"]) == income["common"]["num_present"]
    )
    assert "mean" not in by_name["empty"]["numerical_statistics"]  # no present value: counts only


def test_constraints_json_validates_and_describes_the_baseline() -> None:
    report, _ = drifted_report()
    document = formats.constraints(report)
    validate(document, CONSTRAINTS_SCHEMA)
    by_name = {f["name"]: f for f in document["features"]}
    assert (
        by_name["age"]["inferred_type"] == "Integral" and by_name["age"]["num_constraints"]["is_non_negative"]
    )
    assert sorted(by_name["plan"]["string_constraints"]["domains"]) == ["basic", "plus", "pro"]
    assert by_name["income"]["completeness"] == 1.0


def test_constraint_violations_json_validates_and_names_each_check() -> None:
    report, columns = drifted_report()
    document = formats.violations(report, columns)
    validate(document, VIOLATIONS_SCHEMA)
    found = {(v["feature_name"], v["constraint_check_type"]) for v in document["violations"]}
    assert ("income", "completeness_check") in found
    assert ("income", "baseline_drift_check") in found
    assert ("age", "data_type_check") in found
    assert ("plan", "categorical_values_check") in found
    assert ("gone", "missing_column_check") in found
    assert ("extra", "extra_column_check") in found
    assert not any(name == "empty" for name, _ in found)


def test_no_violations_without_drift() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=3000), "c": rng.choice(["a", "b"], 3000)})
    report = compare(frame.iloc[:1500], frame.iloc[1500:], {"x": "numeric", "c": "categorical"})
    document = formats.violations(report, list(frame.columns))
    validate(document, VIOLATIONS_SCHEMA)
    assert document == {"violations": []}


@pytest.mark.parametrize("schema", [STATISTICS_SCHEMA, CONSTRAINTS_SCHEMA, VIOLATIONS_SCHEMA])
def test_the_schemas_reject_a_malformed_file(schema: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "features": [{"name": 3}], "violations": [{}]}, schema)
