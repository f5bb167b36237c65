"""The deployment policy in the settings becomes SageMaker's DeploymentConfig (deployment guardrails)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlcycle.config import DeploymentPolicy, ServingSettings
from mlcycle.deployment import deployment_config

ALARMS = ["error-rate", "latency"]


def test_canary_shifts_its_share_then_the_rest_and_rolls_back_on_the_alarms() -> None:
    policy = DeploymentPolicy(
        strategy="canary", canary_percent=20, wait_seconds=60, termination_wait_seconds=30
    )
    config = deployment_config(policy, ALARMS)
    assert config == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 60,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
            },
            "TerminationWaitInSeconds": 30,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "error-rate"}, {"AlarmName": "latency"}]},
    }
    assert policy.shifts == [20, 100]


def test_linear_steps_and_all_at_once() -> None:
    linear = deployment_config(DeploymentPolicy(strategy="linear", linear_step_percent=30), ALARMS)
    routing = linear["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "LINEAR" and routing["LinearStepSize"] == {
        "Type": "CAPACITY_PERCENT",
        "Value": 30,
    }
    assert DeploymentPolicy(strategy="linear", linear_step_percent=30).shifts == [30, 60, 90, 100]
    at_once = deployment_config(DeploymentPolicy(strategy="all_at_once"), [])
    assert at_once["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "ALL_AT_ONCE",
        "WaitIntervalInSeconds": 0,
    }
    assert "AutoRollbackConfiguration" not in at_once  # no alarms, no rollback configuration


def test_a_policy_must_fit_in_its_time_limit() -> None:
    with pytest.raises(ValidationError, match="waits add up to"):
        DeploymentPolicy(
            strategy="linear", linear_step_percent=10, wait_seconds=600, max_execution_seconds=3600
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alarm_period_seconds": 45}, "10, 30 or a multiple of 60"),
        ({"alarm_datapoints": 3, "alarm_evaluation_periods": 2}, "cannot exceed"),
        ({"min_instances": 3, "max_instances": 2}, "min_instances"),
    ],
)
def test_serving_settings_refuse_what_aws_would(settings: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServingSettings.model_validate(settings)
