from __future__ import annotations

import pytest

from mlcycle.config import Settings
from mlcycle.registry import APPROVED, PENDING, QualityGateFailed, decide_approval, quality_gate


def test_quality_gate(settings: Settings) -> None:
    assert quality_gate(settings, {"roc_auc": 0.9}) == 0.9
    with pytest.raises(QualityGateFailed, match="does not meet"):
        quality_gate(settings, {"roc_auc": 0.5})
    with pytest.raises(QualityGateFailed, match="has no"):
        quality_gate(settings, {"accuracy": 0.9})


def test_first_model_is_approved_and_challenger_must_beat_champion(settings: Settings) -> None:
    strict = settings.model_copy(
        update={"thresholds": settings.thresholds.model_copy(update={"auto_approve_margin": 0.01})}
    )
    assert decide_approval(strict, 0.80, None) == APPROVED
    assert decide_approval(strict, 0.815, 0.80) == APPROVED
    assert decide_approval(strict, 0.805, 0.80) == PENDING
    manual = settings.model_copy(
        update={"thresholds": settings.thresholds.model_copy(update={"auto_approve": False})}
    )
    assert decide_approval(manual, 0.99, None) == PENDING
