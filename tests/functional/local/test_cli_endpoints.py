"""``mlcycle endpoints`` against the embedded AWS: list, show, invoke (the contract's errors included),
rollback by hand to the config the current one replaced, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlcycle import cli, deployment
from mlcycle.application import connect
from mlcycle.application.platform import Platform
from mlcycle.config import Settings
from mlcycle.local.server import EmbeddedAws
from tests.functional.local import conftest_sagemaker
from tests.functional.local.conftest_sagemaker import (
    SageMakerWorld,
    TrainedJob,
    create_model,
    unique,
    wait_for_endpoint,
)

sm_world = conftest_sagemaker.sm_world
trained_job = conftest_sagemaker.trained_job
Client = Any


def _config(aws_client: Client, model: str, previous: str | None = None) -> str:
    name = unique("config")
    tags = [{"Key": deployment.PREVIOUS_CONFIG_TAG, "Value": previous}] if previous else []
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
    aws_client("sagemaker").create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=[variant], Tags=tags
    )
    return name


def test_endpoints_commands(
    trained_job: TrainedJob,
    sm_world: SageMakerWorld,
    aws_client: Client,
    wait_for: Any,
    embedded_aws: EmbeddedAws,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    sagemaker = aws_client("sagemaker")
    mine = settings.model_copy(update={"project": "cli", "stage": unique("e").replace("-", "")[:10]})
    monkeypatch.setattr("mlcycle.application.settings.resolve_settings", lambda _path=None: mine)
    platform = Platform(*(["unused"] * 6))
    monkeypatch.setattr(
        connect, "connect", lambda _s: connect.Connection(platform, mine.region, embedded_aws.endpoint_url)
    )
    # GIVEN the platform's endpoint, updated once (the second config records the first as its previous)
    model = create_model(aws_client, trained_job.model_data)
    first = _config(aws_client, model)
    sagemaker.create_endpoint(EndpointName=mine.endpoint_name, EndpointConfigName=first)
    wait_for_endpoint(aws_client, wait_for, mine.endpoint_name)
    second = _config(aws_client, model, previous=first)
    sagemaker.update_endpoint(EndpointName=mine.endpoint_name, EndpointConfigName=second)
    wait_for_endpoint(aws_client, wait_for, mine.endpoint_name)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["endpoints", *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    # THEN list and show describe it
    code, out, _ = run("list")
    assert code == 0 and mine.endpoint_name in out and "InService" in out
    code, out, _ = run("show", mine.endpoint_name)
    assert code == 0 and f"config     {second}" in out and "variant    AllTraffic" in out
    # AND invoke answers a request, and names a client's mistake
    body = tmp_path / "rows.csv"
    body.write_text("\n".join(",".join(map(str, row)) for row in sm_world.features[:2].tolist()))
    code, out, _ = run("invoke", mine.endpoint_name, str(body))
    assert code == 0 and len(json.loads(out)["predictions"]) == 2
    bad = tmp_path / "bad.txt"
    bad.write_text("x")
    code, _, err = run("invoke", mine.endpoint_name, str(bad))
    assert code == 1 and "--content-type" in err
    # WHEN it is rolled back by hand
    code, out, _ = run("rollback", mine.endpoint_name)
    assert code == 0 and first in out
    endpoint = wait_for_endpoint(aws_client, wait_for, mine.endpoint_name)
    # THEN it serves the previous config again; and delete removes it
    assert endpoint["EndpointConfigName"] == first
    code, _, err = run("rollback", "someone-elses-endpoint")
    assert code == 1 and "not this platform's endpoint" in err
    code, out, _ = run("delete", mine.endpoint_name)
    assert code == 0
    assert mine.endpoint_name not in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
