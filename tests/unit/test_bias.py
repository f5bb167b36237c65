"""Bias per segment of the sensitive attribute: positive rate and recall against the baseline's, small
and unseen segments, an all-missing attribute; the result is JSON without NaN."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlcycle.monitoring import bias, outcomes


def _frame(
    seed: int, n: int, *, flag_south: float = 0.3, regions: tuple[str, ...] = ("north", "south")
) -> pd.DataFrame:
    """Labels 30% positive everywhere; the model flags positives with recall 0.8 and negatives 10% of the
    time, except that in 'south' it flags any row a further ``flag_south - 0.3`` of rows."""
    rng = np.random.default_rng(seed)
    region = rng.choice(regions, n)
    label = (rng.random(n) < 0.3).astype(int)
    flagged = np.where(label == 1, rng.random(n) < 0.8, rng.random(n) < 0.1)
    flagged |= (region == "south") & (rng.random(n) < max(flag_south - 0.3, 0.0))
    return pd.DataFrame(
        {
            "region": region,
            "prediction": flagged.astype(int),
            "label": label,
            "inference_id": np.arange(n).astype(str),
        }
    )


def _joined(frame: pd.DataFrame) -> outcomes.Joined:
    window = frame.drop(columns=["label"])
    return outcomes.join(window, frame[["inference_id", "label"]])


def test_baseline_has_rates_per_segment() -> None:
    frame = pd.DataFrame(
        {"region": ["a", "a", "a", "b", None], "prediction": [1, 0, 1, 0, 1], "label": [1, 1, 0, 1, np.nan]}
    )
    reference = bias.baseline(frame, "region")
    assert reference["segments"]["a"] == {
        "rows": 3,
        "labelled_positives": 2,
        "positive_rate": pytest.approx(2 / 3),
        "recall": 0.5,
    }
    assert reference["segments"]["b"]["recall"] == 0.0
    assert reference["segments"][bias.MISSING] == {
        "rows": 1,
        "labelled_positives": 0,
        "positive_rate": 1.0,
        "recall": None,
    }
    json.dumps(reference, allow_nan=False)


def test_same_behaviour_is_not_bias() -> None:
    reference = bias.baseline(_frame(0, 4000), "region")
    result = bias.evaluate(_joined(_frame(1, 4000)), "region", reference, tolerance=0.1)
    assert result.detected is False
    assert all(s.detected is False for s in result.segments)


def test_a_segment_whose_positive_rate_moved_is_bias() -> None:
    reference = bias.baseline(_frame(0, 4000), "region")
    result = bias.evaluate(_joined(_frame(1, 4000, flag_south=0.6)), "region", reference, tolerance=0.1)
    by_name = {s.segment: s for s in result.segments}
    assert result.detected is True
    assert by_name["south"].detected is True and by_name["south"].positive_rate_change > 0.1
    assert by_name["north"].detected is False
    assert by_name["south"].baseline_positive_rate == reference["segments"]["south"]["positive_rate"]


def test_recall_is_judged_per_segment() -> None:
    reference = bias.baseline(_frame(0, 4000), "region")
    current = _frame(1, 4000)
    missed = (current["region"] == "north") & (current["label"] == 1)
    current.loc[missed, "prediction"] = 0  # the model stops finding positives in the north
    result = bias.evaluate(_joined(current), "region", reference, tolerance=0.1)
    north = next(s for s in result.segments if s.segment == "north")
    assert north.recall == 0.0 and north.recall_change is not None and north.recall_change < -0.5
    assert result.detected is True


def test_small_and_unseen_segments_are_insufficient_not_verdicts() -> None:
    reference = bias.baseline(_frame(0, 2000), "region")
    current = _frame(1, 2000, regions=("north", "south", "west"))
    small = _frame(2, 10)  # every segment below min_rows
    unseen = bias.evaluate(_joined(current), "region", reference, tolerance=0.1)
    west = next(s for s in unseen.segments if s.segment == "west")
    assert west.detected is None and west.note == "unseen in the baseline" and west.baseline_recall is None
    assert unseen.detected is False  # the known segments were judged
    tiny = bias.evaluate(_joined(small), "region", reference, tolerance=0.1, min_rows=30)
    assert tiny.detected is None and "no segment of 'region' has 30 rows" in tiny.reason
    assert all(s.note == "too few rows to judge" for s in tiny.segments)


def test_missing_attribute_and_empty_window_are_defined() -> None:
    reference = bias.baseline(_frame(0, 1000), "region")
    all_missing = _frame(1, 500).assign(region=None)
    result = bias.evaluate(_joined(all_missing), "region", reference, tolerance=0.1)
    assert [s.segment for s in result.segments] == [bias.MISSING] and result.detected is None
    absent = bias.evaluate(_joined(_frame(1, 500).drop(columns=["region"])), "region", reference, 0.1)
    assert absent.detected is None and "not a column" in absent.reason
    empty = bias.evaluate(_joined(_frame(1, 0)), "region", reference, 0.1)
    assert empty.segments == [] and empty.detected is None
    unset = bias.evaluate(_joined(_frame(1, 50)), None, reference, 0.1)
    assert unset.detected is None and unset.reason == "no sensitive attribute configured"
    for outcome in (result, absent, empty, unset):
        json.loads(outcome.to_json())  # allow_nan=False: a NaN would raise


def test_numeric_segments_match_across_types() -> None:
    reference = bias.baseline(
        pd.DataFrame({"tier": [1.0] * 40, "prediction": [1] * 40, "label": [1] * 40}), "tier"
    )
    current = pd.DataFrame({"tier": [1] * 40, "prediction": [1] * 40, "inference_id": None})
    result = bias.evaluate(
        outcomes.join(current, pd.DataFrame({"inference_id": [], "label": []})), "tier", reference, 0.1
    )
    assert [s.segment for s in result.segments] == ["1"] and result.segments[0].positive_rate_change == 0.0
    assert result.detected is False  # positive rate judged; recall has no labels here


def test_the_two_proportion_p_value_matches_scipy() -> None:
    from scipy.stats import norm

    from mlcycle.monitoring.bias import two_proportion_p_value

    p1, n1, p2, n2 = 0.62, 100, 0.50, 250
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / (pooled * (1 - pooled) * (1 / n1 + 1 / n2)) ** 0.5
    assert two_proportion_p_value(p1, n1, p2, n2) == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    assert two_proportion_p_value(0.5, 0, 0.5, 10) == 1.0


def test_a_noisy_move_past_the_tolerance_in_a_small_segment_is_not_bias() -> None:
    from mlcycle.monitoring.bias import _compare

    reference = {"rows": 250, "labelled_positives": 140, "positive_rate": 0.50, "recall": 0.80}
    noisy = {"rows": 60, "labelled_positives": 35, "positive_rate": 0.62, "recall": 0.68}
    assert _compare("east", noisy, reference, 0.1, 30).detected is False
    large = {"rows": 2000, "labelled_positives": 1100, "positive_rate": 0.62, "recall": 0.68}
    assert _compare("east", large, reference, 0.1, 30).detected is True
