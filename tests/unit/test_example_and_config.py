from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from mlcycle.application.cycle import bundled_dataset
from mlcycle.application.settings import example_settings, resolve_settings
from mlcycle.config import Settings, SettingsNotFoundError, load_settings
from mlcycle.example import churn


def test_generator_is_seeded() -> None:
    pd.testing.assert_frame_equal(churn.generate(100, seed=3), churn.generate(100, seed=3))


def test_bundled_dataset_is_what_the_generator_makes() -> None:
    shipped = pd.read_csv(bundled_dataset(), dtype=str, keep_default_na=False)
    regenerated = pd.read_csv(
        io.StringIO(churn.bundled_frame().to_csv(index=False)), dtype=str, keep_default_na=False
    )
    pd.testing.assert_frame_equal(shipped, regenerated)


def test_drift_moves_distributions() -> None:
    base, drifted = churn.generate(5000, seed=1), churn.generate(5000, seed=1, drift=1.0)
    assert drifted["monthly_charges"].mean() > base["monthly_charges"].mean() + 20
    assert (drifted["contract"] == "month-to-month").mean() > (base["contract"] == "month-to-month").mean()


def test_drift_out_of_range() -> None:
    with pytest.raises(ValueError, match="drift"):
        churn.generate(10, drift=2)


def test_settings_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mlcycle.toml"
    path.write_text('stage = "prod"\n[thresholds]\nmin_primary_metric = 0.9\n')
    settings = resolve_settings(path)
    assert (settings.stage, settings.thresholds.min_primary_metric) == ("prod", 0.9)
    assert settings.endpoint_name == "mlcycle-prod-endpoint"
    assert settings.problem.target == "churned"


def test_settings_reject_unknown_keys_and_bad_features(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('colour = "blue"\n')
    with pytest.raises(ValidationError):
        resolve_settings(path)
    problem = example_settings().problem.model_dump()
    problem["features"] = ["nope"]
    with pytest.raises(ValidationError, match="nope"):
        Settings.model_validate({"problem": problem})


def test_settings_carry_no_built_in_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a directory with no mlcycle.toml
    monkeypatch.chdir(tmp_path)
    # THEN the domain's loader has no problem to fall back on, and a file without one is invalid alone
    with pytest.raises(SettingsNotFoundError):
        load_settings()
    (tmp_path / "mlcycle.toml").write_text('stage = "prod"\n')
    with pytest.raises(ValidationError, match="problem"):
        load_settings()
    # AND the application layer lays such a file over the example's settings
    assert resolve_settings().stage == "prod"
    assert resolve_settings().problem == example_settings().problem


def test_a_file_with_its_own_problem_stands_alone(tmp_path: Path) -> None:
    problem = example_settings().problem.model_dump(mode="json")
    problem["dataset"]["name"] = "mine"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"problem": problem}))
    settings = resolve_settings(path)
    # nothing of the example beyond what the file says: no views, generic model tests
    assert settings.feature_views == ()
    assert settings.model_tests.sensitive_attribute is None
