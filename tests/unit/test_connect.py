"""How a command's clients reach the platform (mlcycle.application.connect)."""

from __future__ import annotations

import pytest

from mlcycle.application.connect import Connection


def _connection(endpoint_url: str | None) -> Connection:
    return Connection(platform=None, region="us-east-1", endpoint_url=endpoint_url)  # type: ignore[arg-type]


def test_local_clients_need_no_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mlcycle data upload` against `mlcycle local up` on a machine with no AWS account."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    client = _connection("http://127.0.0.1:4566").client("s3")
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert client._request_signer._credentials is not None


def test_deployed_clients_use_the_default_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mine")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    client = _connection(None).client("s3")
    assert client._request_signer._credentials.access_key == "mine"
