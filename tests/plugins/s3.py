"""A real S3 server (MinIO, devcluster/minio.py) for the storage, worker and report tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devcluster.minio import MinioServer, MinioUnavailableError, ensure_minio


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MinioServer]:
    """One MinIO server for the whole session (the first run builds the binary: minutes)."""
    try:
        binary = ensure_minio()
    except MinioUnavailableError as exc:
        pytest.skip(str(exc))
    with MinioServer(binary) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: MinioServer) -> str:
    """A fresh, uniquely named, empty bucket on the session's server."""
    name = f"qe-test-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def own_s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MinioServer]:
    """A MinIO of the test's own, to take down and bring back (the session's must stay up), its
    environment set for the test's S3 clients and the processes it starts."""
    try:
        binary = ensure_minio()
    except MinioUnavailableError as exc:
        pytest.skip(str(exc))
    with MinioServer(binary) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        yield server
