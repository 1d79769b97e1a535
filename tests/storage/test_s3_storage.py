"""Our S3 storage against a real S3 server: round trips, listings, missing keys, failures."""

import pytest

from devcluster.minio import MinioServer
from quanteval.api.errors import StorageError
from quanteval.storage import S3Storage, open_storage


def test_write_read_list_delete(
    s3_server: MinioServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    storage = open_storage(f"s3://{s3_bucket}/qe/ns/eval-uid")
    assert isinstance(storage, S3Storage)
    run = storage.child("runs/m-fp32")
    run.write_text("generations.jsonl", '{"a": 1}\n')
    run.write_text("result.json", "{}")
    storage.child("runs/m-int8").write_text("result.json", "{}")
    assert run.read_text("generations.jsonl") == '{"a": 1}\n'
    assert run.read_text("missing.json") is None
    assert storage.list_children("runs") == ["m-fp32", "m-int8"]
    assert run.list_children("") == ["generations.jsonl", "result.json"]
    run.delete("result.json")
    assert run.read_text("result.json") is None


def test_a_missing_bucket_is_a_storage_error_naming_it(
    s3_server: MinioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    storage = open_storage("s3://no-such-bucket-here/x")
    with pytest.raises(StorageError, match="no-such-bucket-here"):
        storage.write_text("result.json", "{}")


def test_wrong_credentials_are_a_storage_error(
    s3_server: MinioServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(StorageError, match=r"SignatureDoesNotMatch|Access Denied|InvalidAccessKey"):
        open_storage(f"s3://{s3_bucket}/x").read_text("result.json")
