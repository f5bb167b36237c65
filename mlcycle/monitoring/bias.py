"""Bias on live traffic: per segment of the sensitive attribute, the positive prediction rate and the recall,
against the same figures on the model's test set (its baseline).

A segment's figure counts as moved when it moved more than the tolerance *and* the move is significant (a
two-proportion z-test at ``ALPHA``): a segment of a hundred rows moves by 0.1 by chance alone too often for
a monitor that runs every hour. A segment is judged on what it has enough of: its positive rate once it has
``min_rows`` rows, its recall once it has ``min_rows`` labelled positives (recall from a handful of
positives is noise), and only when the baseline judged it on as much. A segment the baseline never saw,
or a window too small to judge, leaves ``detected`` None (insufficient data), never NaN. A missing
attribute value is its own segment.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlcycle.monitoring.outcomes import Joined

MISSING = "(missing)"
#: As ModelTestsSettings.min_segment_rows: smaller segments are too noisy to judge.
MIN_SEGMENT_ROWS = 30
#: A move beyond the tolerance must also be this unlikely by chance (two-sided).
ALPHA = 0.01


@dataclass(frozen=True)
class SegmentBias:
    segment: str
    rows: int
    labelled_positives: int
    positive_rate: float | None
    recall: float | None
    baseline_positive_rate: float | None
    baseline_recall: float | None
    positive_rate_change: float | None
    recall_change: float | None
    detected: bool | None
    note: str = ""


@dataclass(frozen=True)
class BiasResult:
    attribute: str | None
    tolerance: float
    min_rows: int
    segments: list[SegmentBias]
    detected: bool | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)


def baseline(frame: pd.DataFrame, attribute: str, *, positive: int = 1) -> dict[str, Any]:
    """Per segment of ``attribute`` in ``frame`` (``prediction``, ``label``): rows, labelled positives,
    positive rate, recall. JSON-ready: what the model registers and the monitor compares with."""
    return {
        "attribute": attribute,
        "positive_label": positive,
        "segments": _segment_stats(frame, attribute, positive),
    }


def evaluate(
    joined: Joined,
    attribute: str | None,
    baseline: dict[str, Any],
    tolerance: float,
    *,
    min_rows: int = MIN_SEGMENT_ROWS,
) -> BiasResult:
    """Each segment's positive rate and recall against the baseline's; detected when either moved more
    than ``tolerance`` in a segment with enough rows on both sides."""
    if not attribute:
        return BiasResult(None, tolerance, min_rows, [], None, "no sensitive attribute configured")
    positive = int(baseline.get("positive_label", 1))
    current = _segment_stats(joined.frame, attribute, positive)
    reference: dict[str, dict[str, Any]] = baseline.get("segments", {})
    segments = [
        _compare(name, stats, reference.get(name), tolerance, min_rows) for name, stats in current.items()
    ]
    verdicts = [s.detected for s in segments if s.detected is not None]
    detected = any(verdicts) if verdicts else None
    reason = "" if verdicts else _insufficient(joined, attribute, min_rows)
    return BiasResult(attribute, tolerance, min_rows, segments, detected, reason)


def _insufficient(joined: Joined, attribute: str, min_rows: int) -> str:
    if attribute not in joined.frame.columns:
        return f"{attribute!r} is not a column of the captured rows"
    return f"no segment of {attribute!r} has {min_rows} rows here and in the baseline"


def segment_names(values: pd.Series) -> pd.Series:
    """Segment names as strings that match across sources: 1, 1.0 and "1" are one segment."""

    def name(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            return MISSING
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return str(int(value))
        return str(value)

    return values.astype(object).map(name)


def _segment_stats(frame: pd.DataFrame, attribute: str, positive: int) -> dict[str, dict[str, Any]]:
    names = (
        segment_names(frame[attribute])
        if attribute in frame.columns
        else pd.Series(MISSING, index=frame.index, dtype=object)
    )
    predicted = pd.to_numeric(frame["prediction"], errors="coerce")
    label = pd.to_numeric(frame["label"], errors="coerce") if "label" in frame.columns else predicted * np.nan
    table = pd.DataFrame(
        {
            "segment": names.to_numpy(),
            "flagged": (predicted == positive).where(predicted.notna()).to_numpy(dtype=float),
            "is_positive": (label == positive).to_numpy(),
        }
    )
    out: dict[str, dict[str, Any]] = {}
    for segment, rows in table.groupby("segment", sort=True):
        flagged = rows["flagged"].dropna()
        hits = rows.loc[rows["is_positive"], "flagged"].dropna()
        out[str(segment)] = {
            "rows": len(rows),
            "labelled_positives": len(hits),
            "positive_rate": float(flagged.mean()) if len(flagged) else None,
            "recall": float(hits.mean()) if len(hits) else None,
        }
    return out


def _change(value: float | None, reference: float | None, enough: bool) -> float | None:
    return None if value is None or reference is None or not enough else float(value - reference)


def two_proportion_p_value(p1: float, n1: int, p2: float, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when either side has no rows)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 0.0 if p1 != p2 else 1.0
    return math.erfc(abs(p1 - p2) / math.sqrt(variance) / math.sqrt(2))


def _moved(
    change: float | None,
    value: float | None,
    n: int,
    reference: float | None,
    *,
    n_ref: int,
    tolerance: float,
) -> bool | None:
    if change is None or value is None or reference is None:
        return None
    return abs(change) > tolerance and two_proportion_p_value(value, n, reference, n_ref) < ALPHA


def _compare(
    segment: str,
    stats: dict[str, Any],
    reference: dict[str, Any] | None,
    tolerance: float,
    min_rows: int,
) -> SegmentBias:
    known = reference or {}
    rate_enough = stats["rows"] >= min_rows and int(known.get("rows", 0)) >= min_rows
    recall_enough = (
        stats["labelled_positives"] >= min_rows and int(known.get("labelled_positives", 0)) >= min_rows
    )
    rate_change = _change(stats["positive_rate"], known.get("positive_rate"), rate_enough)
    recall_change = _change(stats["recall"], known.get("recall"), recall_enough)
    moves = (
        _moved(
            rate_change,
            stats["positive_rate"],
            stats["rows"],
            known.get("positive_rate"),
            n_ref=int(known.get("rows", 0)),
            tolerance=tolerance,
        ),
        _moved(
            recall_change,
            stats["recall"],
            stats["labelled_positives"],
            known.get("recall"),
            n_ref=int(known.get("labelled_positives", 0)),
            tolerance=tolerance,
        ),
    )
    judged = [m for m in moves if m is not None]
    note = "" if judged else ("unseen in the baseline" if reference is None else "too few rows to judge")
    return SegmentBias(
        segment=segment,
        rows=int(stats["rows"]),
        labelled_positives=int(stats["labelled_positives"]),
        positive_rate=stats["positive_rate"],
        recall=stats["recall"],
        baseline_positive_rate=known.get("positive_rate"),
        baseline_recall=known.get("recall"),
        positive_rate_change=rate_change,
        recall_change=recall_change,
        detected=any(judged) if judged else None,
        note=note,
    )
