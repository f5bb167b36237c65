"""SageMaker endpoints of the embedded AWS: real model servers behind InvokeEndpoint, updates, capture."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import urllib3
from botocore.exceptions import ClientError
from sklearn.linear_model import LogisticRegression

from mlcycle.local.sagemaker import endpoints, servers
from mlcycle.serving import server as serving
from tests.functional.local import conftest_sagemaker
from tests.functional.local.conftest_sagemaker import (
    FIXTURES,
    Client,
    SageMakerWorld,
    TrainedJob,
    create_endpoint_config,
    create_model,
    read_tar,
    tar_gz,
    unique,
    wait_for_endpoint,
)

# The shared fixtures, bound here so pytest finds them (conftest.py belongs to the embedded AWS as a whole).
sm_world = conftest_sagemaker.sm_world
trained_job = conftest_sagemaker.trained_job


def _csv(rows: np.ndarray) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in rows)


def _ping(server: servers.ModelServer) -> int:
    return urllib3.request("GET", f"{server.url}/ping", timeout=2.0, retries=False).status


def _predict(aws_client: Client, name: str, rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    response = aws_client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=_csv(rows), ContentType="text/csv", Accept="application/json", **extra
    )
    result: dict[str, Any] = json.loads(response["Body"].read())
    return result


def _upload_model(aws_client: Client, world: SageMakerWorld, files: dict[str, bytes]) -> str:
    key = f"models/{unique('model')}/model.tar.gz"
    aws_client("s3").put_object(Bucket=world.bucket, Key=key, Body=tar_gz(files))
    return f"s3://{world.bucket}/{key}"


def _joblib_bytes(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class ServedEndpoint:
    name: str
    status_at_creation: str
    description: dict[str, Any]
    capture_uri: str
    estimator: Any


@pytest.fixture(scope="module")
def served(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> Iterator[ServedEndpoint]:
    """The trained model behind an endpoint with full data capture (read-only for its tests)."""
    name = unique("endpoint")
    capture_uri = f"s3://{sm_world.bucket}/capture"
    model = create_model(aws_client, trained_job.model_data)
    config = create_endpoint_config(aws_client, {"AllTraffic": model}, capture_uri=capture_uri)
    sagemaker = aws_client("sagemaker")
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    status = sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]
    description = wait_for_endpoint(aws_client, wait_for, name)
    estimator = joblib.load(io.BytesIO(read_tar(aws_client("s3"), trained_job.model_data)["model.joblib"]))
    yield ServedEndpoint(name, status, description, capture_uri, estimator)
    sagemaker.delete_endpoint(EndpointName=name)


# ---- create and invoke ---------------------------------------------------------------------------------


def test_endpoint_is_creating_then_in_service_and_pings(served: ServedEndpoint) -> None:
    assert served.status_at_creation == "Creating"
    assert served.description["EndpointStatus"] == "InService", served.description.get("FailureReason")
    assert served.description["DataCaptureConfig"]["CaptureStatus"] == "Started"
    [server] = endpoints.endpoint_servers(served.name)
    assert server.variant == "AllTraffic" and _ping(server) == 200


def test_invoke_endpoint_returns_the_models_predictions(
    served: ServedEndpoint, sm_world: SageMakerWorld, aws_client: Client
) -> None:
    rows = sm_world.features[:7]
    response = aws_client("sagemaker-runtime").invoke_endpoint(
        EndpointName=served.name, Body=_csv(rows), ContentType="text/csv", Accept="application/json"
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    body = json.loads(response["Body"].read())
    assert body["predictions"] == served.estimator.predict(rows).tolist()
    assert body["probabilities"] == pytest.approx(served.estimator.predict_proba(rows)[:, 1].tolist())


def test_a_failing_model_answers_model_error(served: ServedEndpoint, aws_client: Client) -> None:
    with pytest.raises(ClientError) as raised:
        aws_client("sagemaker-runtime").invoke_endpoint(
            EndpointName=served.name, Body="not,a,number", ContentType="text/csv"
        )
    error: dict[str, Any] = dict(raised.value.response)  # ModelError adds fields botocore's type lacks
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 500
    assert "ValueError" in error["OriginalMessage"]


def test_unknown_endpoints_are_validation_errors(aws_client: Client) -> None:
    runtime, sagemaker = aws_client("sagemaker-runtime"), aws_client("sagemaker")
    with pytest.raises(ClientError, match=r"Endpoint nowhere of account \d+ not found"):
        runtime.invoke_endpoint(EndpointName="nowhere", Body="1", ContentType="text/csv")
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.update_endpoint(EndpointName="nowhere", EndpointConfigName="none")


def test_capture_lands_in_s3_in_sagemakers_jsonl_layout(
    served: ServedEndpoint, sm_world: SageMakerWorld, aws_client: Client
) -> None:
    # GIVEN an invocation with an inference id
    rows = sm_world.features[:2]
    answer = _predict(aws_client, served.name, rows, InferenceId="inference-42")
    # WHEN the capture buffer is flushed
    endpoints.flush_capture()
    # THEN JSONL files sit under {destination}/{endpoint}/{variant}/yyyy/mm/dd/hh/
    s3 = aws_client("s3")
    listing = s3.list_objects_v2(Bucket=sm_world.bucket, Prefix=f"capture/{served.name}/")["Contents"]
    hour, name = (
        r"\d{4}/\d\d/\d\d/\d\d",
        r"\d\d-\d\d-\d{3}-[0-9a-f-]{36}\.jsonl",
    )  # yyyy/mm/dd/hh, mm-ss-mmm-uuid
    layout = rf"capture/{re.escape(served.name)}/AllTraffic/{hour}/{name}"
    assert all(re.fullmatch(layout, item["Key"]) for item in listing), [item["Key"] for item in listing]
    lines = [
        json.loads(line)
        for item in listing
        for line in s3.get_object(Bucket=sm_world.bucket, Key=item["Key"])["Body"]
        .read()
        .decode()
        .splitlines()
    ]
    [record] = [r for r in lines if r["eventMetadata"].get("inferenceId") == "inference-42"]
    # AND each line is one record in SageMaker's capture format
    assert record["eventVersion"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["eventMetadata"]["inferenceTime"])
    captured_in, captured_out = (
        record["captureData"]["endpointInput"],
        record["captureData"]["endpointOutput"],
    )
    assert captured_in == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": _csv(rows),
        "encoding": "CSV",
    }
    assert (captured_out["mode"], captured_out["encoding"]) == ("OUTPUT", "JSON")
    assert json.loads(captured_out["data"]) == answer


# ---- update and delete ---------------------------------------------------------------------------------


def test_update_swaps_models_rolls_back_a_broken_one_and_delete_stops_the_server(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> None:
    sagemaker = aws_client("sagemaker")
    rows = sm_world.features[:20]
    # GIVEN an endpoint serving the trained model
    name = unique("lifecycle")
    first = create_endpoint_config(
        aws_client, {"AllTraffic": create_model(aws_client, trained_job.model_data)}
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=first)
    wait_for_endpoint(aws_client, wait_for, name)
    [old_server] = endpoints.endpoint_servers(name)
    before = _predict(aws_client, name, rows)["predictions"]

    # WHEN it is updated to a model trained on flipped labels
    flipped = LogisticRegression().fit(sm_world.features, 1 - sm_world.labels)
    flipped_uri = _upload_model(
        aws_client,
        sm_world,
        {
            "model.joblib": _joblib_bytes(flipped),
            "code/inference.py": (FIXTURES / "inference.py").read_bytes(),
        },
    )
    second = create_endpoint_config(aws_client, {"AllTraffic": create_model(aws_client, flipped_uri)})
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=second)
    # THEN it is Updating, still answering, and then InService on the new model with the old server gone
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] in ("Updating", "InService")
    _predict(aws_client, name, rows)
    endpoint = wait_for_endpoint(aws_client, wait_for, name)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", second)
    assert _predict(aws_client, name, rows)["predictions"] == [1 - p for p in before]
    wait_for(lambda: old_server.process.poll() is not None, timeout=10, what="the old server to exit")

    # WHEN an update names a model whose data does not exist
    broken = create_endpoint_config(
        aws_client, {"AllTraffic": create_model(aws_client, f"s3://{sm_world.bucket}/missing/model.tar.gz")}
    )
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=broken)
    # THEN the endpoint rolls back: InService on the previous config, with the reason recorded
    endpoint = wait_for_endpoint(aws_client, wait_for, name)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", second)
    assert "could not download model data" in endpoint["FailureReason"]
    assert _predict(aws_client, name, rows)["predictions"] == [1 - p for p in before]

    # WHEN it is deleted
    [server] = endpoints.endpoint_servers(name)
    sagemaker.delete_endpoint(EndpointName=name)
    # THEN its server process is gone and the endpoint with it
    wait_for(lambda: server.process.poll() is not None, timeout=10, what="the server to exit")
    assert endpoints.endpoint_servers(name) == []
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName=name)


def test_a_model_that_cannot_load_fails_the_endpoint_until_an_update_fixes_it(
    trained_job: TrainedJob, sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> None:
    sagemaker = aws_client("sagemaker")
    # GIVEN a model.tar.gz without a model and no user module
    uri = _upload_model(aws_client, sm_world, {"README.txt": b"no model here"})
    config = create_endpoint_config(aws_client, {"AllTraffic": create_model(aws_client, uri, program=None)})
    # WHEN an endpoint is created from it
    name = unique("broken")
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    # THEN it fails with the server's own reason, and cannot be invoked
    endpoint = wait_for_endpoint(aws_client, wait_for, name)
    assert endpoint["EndpointStatus"] == "Failed"
    assert "FileNotFoundError: no model.joblib" in endpoint["FailureReason"]
    with pytest.raises(ClientError, match="not found"):
        aws_client("sagemaker-runtime").invoke_endpoint(EndpointName=name, Body="1", ContentType="text/csv")
    # AND an update to a good model brings it into service
    good = create_endpoint_config(
        aws_client, {"AllTraffic": create_model(aws_client, trained_job.model_data)}
    )
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=good)
    endpoint = wait_for_endpoint(aws_client, wait_for, name)
    assert (endpoint["EndpointStatus"], endpoint.get("FailureReason")) == ("InService", None)
    assert len(_predict(aws_client, name, sm_world.features[:3])["predictions"]) == 3
    sagemaker.delete_endpoint(EndpointName=name)


def test_default_handlers_take_binary_npy_and_answer_csv(
    sm_world: SageMakerWorld, aws_client: Client, wait_for: Any
) -> None:
    # GIVEN a model.tar.gz with only model.joblib: the container's default handlers serve it
    estimator = LogisticRegression().fit(sm_world.features, sm_world.labels)
    uri = _upload_model(aws_client, sm_world, {"model.joblib": _joblib_bytes(estimator)})
    config = create_endpoint_config(aws_client, {"Defaults": create_model(aws_client, uri, program=None)})
    name = unique("defaults")
    aws_client("sagemaker").create_endpoint(EndpointName=name, EndpointConfigName=config)
    assert wait_for_endpoint(aws_client, wait_for, name)["EndpointStatus"] == "InService"
    rows = sm_world.features[:5]
    npy = io.BytesIO()
    np.save(npy, rows)
    # WHEN it is sent NPY (not UTF-8) and asked for CSV
    response = aws_client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=npy.getvalue(), ContentType="application/x-npy", Accept="text/csv"
    )
    # THEN it answers one prediction per line
    assert response["ContentType"].startswith("text/csv")
    assert response["Body"].read().decode().split() == [str(v) for v in estimator.predict(rows)]
    aws_client("sagemaker").delete_endpoint(EndpointName=name)


# ---- the model server's handlers, in process -----------------------------------------------------------


def test_default_decoders_and_encoders() -> None:
    assert serving.default_input_fn("1,2\n3,4", "text/csv; charset=utf-8").tolist() == [[1, 2], [3, 4]]
    assert serving.default_input_fn("1,2", "text/csv").shape == (1, 2)
    assert serving.default_input_fn('{"instances": [[1, 2]]}', "application/json").tolist() == [[1, 2]]
    with pytest.raises(serving.ModelServerError) as unsupported:
        serving.default_input_fn(b"x", "image/png")
    assert unsupported.value.status == 415
    with pytest.raises(serving.ModelServerError) as bad:
        serving.default_input_fn("a,b", "text/csv")
    assert bad.value.status == 400
    assert serving.default_output_fn(np.array([1, 0]), "text/csv") == (b"1\n0\n", "text/csv")
    assert serving.default_output_fn(np.array([1, 0]), "application/json") == (b"[1, 0]", "application/json")


def test_submit_directory_maps_the_container_model_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAGEMAKER_SUBMIT_DIRECTORY", "/opt/ml/model/code")
    assert serving.code_dir(tmp_path) == tmp_path / "code"
    monkeypatch.setenv("SAGEMAKER_SUBMIT_DIRECTORY", str(tmp_path / "elsewhere"))
    assert serving.code_dir(tmp_path) == tmp_path / "elsewhere"
