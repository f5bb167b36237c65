"""Helpers shared by every level of the suite (plain functions; the fixtures live in conftest.py)."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

from mlcycle.config import BUNDLED_CONFIG_FILE, Settings
from mlcycle.local.context import ACCOUNT_ID

REGION = "us-east-1"


def make_key_table(dynamodb: Any, name: str) -> str:
    """A pk/sk string-keyed, on-demand table: the shape of our lineage and online-store tables."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def make_bucket(s3: Any, name: str) -> str:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


_REQUESTS = threading.RLock()


def atomic_requests(client: Any) -> Any:
    """``client`` with each request run whole, as AWS runs each request: moto in-process checks a condition
    and writes without a lock, so threads could interleave inside one request. Requests of different
    threads still interleave freely with each other, which is what conditional writes must handle."""
    call = client._make_api_call

    def locked(*args: Any, **kwargs: Any) -> Any:
        with _REQUESTS:
            return call(*args, **kwargs)

    client._make_api_call = locked
    return client


def serve_package(sagemaker: Any, endpoint: str, package: str, container: dict[str, Any]) -> None:
    """``endpoint`` serving model package ``package`` (tagged on its model, as mlcycle.deployment does)."""
    from mlcycle import deployment

    sagemaker.create_model(
        ModelName="m1",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer=container,
        Tags=[{"Key": deployment.PACKAGE_TAG, "Value": package}],
    )
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": "m1",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
    sagemaker.create_endpoint_config(EndpointConfigName="c1", ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName="c1")


def capture_record(
    body: str, answer: str, status: int = 200, inference_id: str | None = None, event_id: str = "e"
) -> str:
    """One SageMaker data-capture JSONL record of a CSV request and its JSON answer (a status other than
    200 as ``invocationStatus``, mlcycle's extension)."""
    metadata: dict[str, Any] = {
        "eventId": event_id,
        "inferenceTime": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
    }
    if inference_id:
        metadata["inferenceId"] = inference_id
    if status != 200:
        metadata["invocationStatus"] = status
    data = {
        "endpointInput": {
            "observedContentType": "text/csv",
            "mode": "INPUT",
            "data": body,
            "encoding": "CSV",
        },
        "endpointOutput": {
            "observedContentType": "application/json",
            "mode": "OUTPUT",
            "data": answer,
            "encoding": "JSON",
        },
    }
    return json.dumps({"captureData": data, "eventMetadata": metadata, "eventVersion": "0"})


@contextmanager
def functions_deployed_with(lambda_client: Any, settings: Settings, *modules: str) -> Iterator[None]:
    """The functions whose handlers live in ``modules`` redeployed with ``settings`` bundled in their code
    (what ``cdk deploy`` does after a settings change: each runs its own bundle), then their code restored."""
    functions = lambda_client.list_functions()["Functions"]
    names = [f["FunctionName"] for f in functions if f["Handler"].rsplit(".", 1)[0] in modules]
    assert names, f"no function runs a handler of {modules}"
    with ExitStack() as stack:
        for name in names:
            stack.enter_context(redeployed(lambda_client, name, {BUNDLED_CONFIG_FILE: settings.to_json()}))
        yield


@contextmanager
def redeployed(
    lambda_client: Any, name: str, files: Mapping[str, str], **configuration: Any
) -> Iterator[None]:
    """Function ``name`` redeployed with ``files`` written into its bundle (replacing any of that name) and
    ``configuration`` (``Handler``, ``Timeout``, ``Environment``...) changed; then put back as it was."""
    from moto.awslambda.utils import get_backend

    backend = get_backend(ACCOUNT_ID, lambda_client.meta.region_name)
    original_code = bytes(backend.get_function(name).code_bytes)
    current = lambda_client.get_function_configuration(FunctionName=name)
    original_configuration = {key: current[key] for key in configuration}
    try:
        lambda_client.update_function_code(FunctionName=name, ZipFile=_with_files(original_code, files))
        if configuration:
            lambda_client.update_function_configuration(FunctionName=name, **configuration)
        yield
    finally:
        lambda_client.update_function_code(FunctionName=name, ZipFile=original_code)
        if configuration:
            lambda_client.update_function_configuration(FunctionName=name, **original_configuration)


def _with_files(code: bytes, files: Mapping[str, str]) -> bytes:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(code)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            if item.filename not in files:
                target.writestr(item, source.read(item))
        for filename, text in files.items():
            target.writestr(filename, text)
    return out.getvalue()
