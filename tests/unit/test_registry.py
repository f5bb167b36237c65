from __future__ import annotations

from typing import Any

import pytest

from mlcycle.config import Settings
from mlcycle.registry import APPROVED, PENDING, QualityGateFailed, decide_approval, quality_gate
from tests.utils import REGION


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


# ---- the champion comparison on the recent labelled window ---------------------------------------------


def _challenger(recent: dict[str, Any] | None, test_auc: float = 0.84) -> Any:
    from mlcycle.registry import TrainingJobResult

    return TrainingJobResult(
        job_name=f"job-{test_auc}-{bool(recent)}-{(recent or {}).get('rows')}",
        model_data_url="s3://a/m.tar.gz",
        image="img",
        evaluation_uri="s3://a/e/evaluation.json",
        metrics={"roc_auc": test_auc},
        model_tests={"passed": True, "summary": "all passed"},
        recent=recent,
    )


def _on_recent(challenger: float, champion: float, rows: int = 400) -> dict[str, Any]:
    return {"rows": rows, "challenger": {"roc_auc": challenger}, "champion": {"roc_auc": champion}}


@pytest.fixture
def group_with_champion(settings: Settings, moto_aws: None) -> Any:
    """A registry whose champion registered a test AUC of 0.90."""
    import boto3

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName=settings.model_package_group)
    sagemaker.create_model_package(
        ModelPackageGroupName=settings.model_package_group,
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": "s3://a/champion.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus=APPROVED,
        CustomerMetadataProperties={"metric:roc_auc": "0.9"},
    )
    return sagemaker


def test_a_challenger_better_on_recent_rows_is_approved_though_worse_on_the_old_test_metric(
    settings: Settings, group_with_champion: Any
) -> None:
    from mlcycle.registry import RECENT_BASIS, register

    # GIVEN a challenger at 0.84 on its test split (the champion registered 0.90), but better than the
    # champion on the same recent labelled rows (0.80 vs 0.72)
    challenger = _challenger(_on_recent(0.80, 0.72))
    # WHEN it is registered, THEN the recent window decides: approved, and the package says why
    registration = register(settings, challenger, {"training_set_id": "t"}, sagemaker=group_with_champion)
    assert registration.approval_status == APPROVED and registration.basis == RECENT_BASIS
    assert (registration.value, registration.challenger_value, registration.champion_value) == (
        0.84,
        0.80,
        0.72,
    )
    metadata = group_with_champion.describe_model_package(ModelPackageName=registration.model_package_arn)[
        "CustomerMetadataProperties"
    ]
    assert metadata["champion_comparison"] == "recent window, 400 rows: challenger 0.8, champion 0.72"


def test_a_challenger_worse_on_recent_rows_waits_for_review(
    settings: Settings, group_with_champion: Any
) -> None:
    from mlcycle.registry import register

    # GIVEN a challenger better on its test split than the champion registered, but worse on recent rows
    registration = register(
        settings, _challenger(_on_recent(0.70, 0.75), test_auc=0.95), {}, sagemaker=group_with_champion
    )
    assert registration.approval_status == PENDING and registration.basis == "recent_window"


def test_too_few_recent_rows_or_none_compare_the_registered_test_metrics(settings: Settings) -> None:
    from mlcycle.registry import TEST_BASIS, Comparison, comparison

    champion = {"version": 1, "arn": "a", "metrics": {"roc_auc": 0.9}}
    few = _challenger(_on_recent(0.80, 0.72, rows=settings.monitoring.min_labelled_rows - 1))
    assert comparison(settings, few, 0.84, champion) == Comparison(TEST_BASIS, 0.84, 0.9)
    assert comparison(settings, _challenger(None), 0.84, champion) == Comparison(TEST_BASIS, 0.84, 0.9)
    assert comparison(settings, _challenger(None), 0.84, None) == Comparison(TEST_BASIS, 0.84, None)
    undefined = _challenger({"rows": 400, "challenger": {"roc_auc": 0.8}, "champion": {}})
    assert comparison(settings, undefined, 0.84, champion).basis == TEST_BASIS
    enough = _challenger(_on_recent(0.80, 0.72, rows=settings.monitoring.min_labelled_rows))
    assert comparison(settings, enough, 0.84, champion).basis == "recent_window"


# ---- the run's recent window -----------------------------------------------------------------------------


def _start(settings: Settings, s3: Any, sagemaker: Any, **given: Any) -> dict[str, Any]:
    from mlcycle.pipeline_runs import start_run

    return start_run(
        settings,
        execution_name="run-7",
        dataset=None,
        poll_seconds=5,
        s3=s3,
        sagemaker=sagemaker,
        artifacts_bucket="artifacts",
        **given,
    )


def test_start_run_copies_the_recent_window_and_records_it_with_the_trigger(
    settings: Settings, group_with_champion: Any, s3: Any
) -> None:
    import json

    from mlcycle.pipeline_runs import RecentWindow, RetrainingTrigger

    s3.create_bucket(Bucket="artifacts")
    s3.put_object(Bucket="artifacts", Key="recent/run-7.parquet", Body=b"PAR1...")
    window = RecentWindow(uri="s3://artifacts/recent/run-7.parquet", rows=120, windows=3, model_version=1)
    trigger = RetrainingTrigger(type="ModelQualityDegraded", reason="roc_auc fell", event_id="ev-1")
    run = _start(settings, s3, group_with_champion, recent_window=window, trigger=trigger)
    copied = s3.get_object(Bucket="artifacts", Key="runs/run-7/recent.parquet")["Body"].read()
    assert copied == b"PAR1..." and run["recent_window_rows"] == 120
    document = json.loads(s3.get_object(Bucket="artifacts", Key="runs/run-7/run.json")["Body"].read())
    assert document["recent_window"] == window.model_dump() | {"file": "recent.parquet"}
    assert document["trigger"]["type"] == "ModelQualityDegraded"
    assert document["min_labelled_rows"] == settings.monitoring.min_labelled_rows


def test_a_recent_window_whose_object_is_missing_fails_the_run(
    settings: Settings, group_with_champion: Any, s3: Any
) -> None:
    from mlcycle.pipeline_runs import InvalidRunError, RecentWindow

    s3.create_bucket(Bucket="artifacts")
    window = RecentWindow(uri="s3://artifacts/recent/gone.parquet", rows=120, windows=3)
    with pytest.raises(
        InvalidRunError, match=r"recent labelled window s3://artifacts/recent/gone.parquet does not"
    ):
        _start(settings, s3, group_with_champion, recent_window=window)
    assert "Contents" not in s3.list_objects_v2(Bucket="artifacts", Prefix="runs/")  # nothing started
    # AND without a window the run document says so
    _start(settings, s3, group_with_champion)
    assert s3.head_object(Bucket="artifacts", Key="runs/run-7/run.json")
    assert "Contents" not in s3.list_objects_v2(Bucket="artifacts", Prefix="runs/run-7/recent")
