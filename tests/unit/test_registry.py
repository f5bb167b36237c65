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


def test_package_metadata_keeps_lineage_metrics_and_the_test_summary_within_limits() -> None:
    from mlcycle.registry import METADATA_VALUE_LIMIT, TrainingJobResult, _reports, package_metadata

    # GIVEN an evaluated job with a long test summary
    result = TrainingJobResult(
        job_name="j",
        model_data_url="s3://a/m.tar.gz",
        image="img",
        evaluation_uri="s3://a/e/evaluation.json",
        metrics={"roc_auc": 0.8512345},
        model_tests_uri="s3://a/e/model_tests.json",
        baseline_uri="s3://a/e/baseline.json",
        model_tests={"passed": True, "summary": "x" * 400},
        code_version="s3://assets/abc.gz",
    )
    # THEN metadata values fit SageMaker's limit and the reports land where the registry reads them
    metadata = package_metadata(result, {"training_set_id": "t1", "evaluation_job": ""})
    assert metadata["metric:roc_auc"] == "0.851235" and metadata["code_version"] == "s3://assets/abc.gz"
    assert len(metadata["model_tests"]) == METADATA_VALUE_LIMIT and "evaluation_job" not in metadata
    reports = _reports(result)
    assert reports["ModelMetrics"]["ModelQuality"]["Constraints"]["S3Uri"] == "s3://a/e/model_tests.json"
    assert (
        reports["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"]["S3Uri"] == "s3://a/e/baseline.json"
    )


def test_start_run_refuses_tests_on_unknown_features(settings: Settings) -> None:
    from mlcycle.config import DirectionalCheck
    from mlcycle.pipeline_runs import settings_problems

    assert settings_problems(settings) == []
    broken = settings.model_copy(
        update={
            "model_tests": settings.model_tests.model_copy(
                update={
                    "directional": (DirectionalCheck(feature="contract", delta=1),),
                    "sensitive_attribute": "nope",
                }
            )
        }
    )
    assert settings_problems(broken) == [
        "directional check on 'contract', which is not numeric",
        "sensitive attribute 'nope' is not a feature",
    ]


def test_a_fault_injected_run_reaches_the_model_container_and_says_so(settings: Settings) -> None:
    from functions.register_model import Request, lineage
    from mlcycle.pipeline_runs import PipelineInput

    # GIVEN a run started with fault injection, as `mlcycle train --inject-model-errors 0.5` starts it
    given = PipelineInput.model_validate({"fault_injection": {"model_error_rate": 0.5}})
    assert given.fault_injection is not None and given.fault_injection.model_error_rate == 0.5
    with pytest.raises(ValueError, match="greater than 0"):
        PipelineInput.model_validate({"fault_injection": {"model_error_rate": 0}})
    # WHEN the register step gets it (null when none was asked for)
    ref = {"training_set_id": "t", "manifest_uri": "s3://b/m.json"}
    request = Request.model_validate(
        {"training_job_name": "j", "evaluation_prefix": "s3://b/e", "training_set": ref}
        | {"fault_injection": given.fault_injection.model_dump()}
    )
    # THEN the package's lineage names it, so a broken model is never mistaken for a real one
    assert lineage(request, settings)["fault_injection"] == "model_error_rate=0.5"
    plain = Request.model_validate(
        {
            "training_job_name": "j",
            "evaluation_prefix": "s3://b/e",
            "training_set": ref,
            "fault_injection": None,
        }
    )
    assert "fault_injection" not in lineage(plain, settings)
