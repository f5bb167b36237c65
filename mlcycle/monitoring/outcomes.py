"""Captured predictions joined with their ground truth, by inference id.

As Model Monitor merges ``groundTruthData`` with the capture's ``eventMetadata``: a captured row gets the
label stored for its ``inference_id``; rows without an id, or whose id has no label yet, keep a NaN label
and count against the coverage. Joining a window again after late labels arrived updates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Joined:
    """A window with a ``label`` column (NaN where no label arrived), and how much of it is labelled."""

    frame: pd.DataFrame
    coverage: float  # labelled share of the window's rows; 0.0 for an empty window
    labelled: int

    @property
    def rows(self) -> int:
        return len(self.frame)


def join(window: pd.DataFrame, labels: pd.DataFrame) -> Joined:
    """``window`` with the label of each row's inference id (labels: ``inference_id``, ``label``; one per
    id, as :func:`mlcycle.monitoring.labels.load` gives them). Every row that carries an id gets its label,
    so a request of several rows under one id shares it."""
    frame = window.drop(columns=["label"], errors="ignore")
    # Ids as strings on both sides: a numeric-looking id read from a file must still meet the captured one.
    truth = labels.assign(inference_id=labels["inference_id"].astype(str))
    by_id = truth.drop_duplicates("inference_id", keep="last").set_index("inference_id")["label"]
    ids = frame["inference_id"] if "inference_id" in frame.columns else pd.Series(None, index=frame.index)
    present = ids.notna().to_numpy()
    label = pd.Series(np.nan, index=frame.index, dtype="float64")
    label[present] = ids[present].astype(str).map(by_id).astype("float64").to_numpy()
    frame = frame.assign(label=label.to_numpy())
    labelled = int(label.notna().sum())
    coverage = labelled / len(frame) if len(frame) else 0.0
    return Joined(frame=frame, coverage=coverage, labelled=labelled)
