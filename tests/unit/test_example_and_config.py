from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from mlcycle.config import Settings, load_settings
from mlcycle.cycle import bundled_dataset
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
    settings = load_settings(path)
    assert (settings.stage, settings.thresholds.min_primary_metric) == ("prod", 0.9)
    assert settings.endpoint_name == "mlcycle-prod-endpoint"
    assert settings.problem.target == "churned"


def test_settings_reject_unknown_keys_and_bad_features(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('colour = "blue"\n')
    with pytest.raises(ValidationError):
        load_settings(path)
    problem = load_settings().problem.model_dump()
    problem["features"] = ["nope"]
    with pytest.raises(ValidationError, match="nope"):
        Settings.model_validate({"problem": problem})
