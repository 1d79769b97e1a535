"""Where results live: a local directory or an S3 prefix, behind one small interface.

Every write is whole-object: a local file is written to a temporary name and renamed, an S3 PUT
is atomic. A run's `result.json` is written last and marks the run complete.
"""

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from quanteval.api.errors import StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Storage(Protocol):
    uri: str

    def read_text(self, key: str) -> str | None:
        """The object's text, or None when it does not exist."""

    def read_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    def write_text(self, key: str, text: str) -> None: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None:
        """Remove the object if it exists."""

    def list_children(self, prefix: str) -> list[str]:
        """The names directly under `prefix/` (one level, like `ls`)."""

    def child(self, key: str) -> "Storage": ...


class LocalStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StorageError(f"cannot read {self.root / key}: {error.strerror}") from error

    def read_text(self, key: str) -> str | None:
        data = self.read_bytes(key)
        return None if data is None else data.decode()

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as error:
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode())

    def delete(self, key: str) -> None:
        try:
            (self.root / key).unlink(missing_ok=True)
        except OSError as error:
            raise StorageError(f"cannot delete {self.root / key}: {error.strerror}") from error

    def list_children(self, prefix: str) -> list[str]:
        directory = self.root / prefix
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))

    def child(self, key: str) -> "LocalStorage":
        return LocalStorage(self.root / key)


class S3Storage:
    def __init__(self, uri: str, endpoint: str = "", region: str = "") -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise StorageError(f"{uri}: an S3 URI needs a bucket (s3://bucket/prefix)")
        self.uri = uri.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3", "")
        self.region = region
        self._client: S3Client | None = None

    @property
    def client(self) -> "S3Client":
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 4, "mode": "standard"},
                s3={"addressing_style": "path"},
            )
            # A session of its own: boto3's default session caches the first credentials it saw.
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint or None,
                region_name=self.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                config=config,
            )
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, error: Exception) -> StorageError:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return StorageError(f"cannot {action} s3://{self.bucket}/{self._key(key)}{where}: {error}")

    def read_text(self, key: str) -> str | None:
        data = self.read_bytes(key)
        return None if data is None else data.decode()

    def read_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            data: bytes = body.read()
            return data
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._fail("read", key, error) from error
        except BotoCoreError as error:
            raise self._fail("read", key, error) from error

    def write_bytes(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (ClientError, BotoCoreError) as error:
            raise self._fail("write", key, error) from error

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode())

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as error:
            raise self._fail("delete", key, error) from error

    def list_children(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix).rstrip("/") + "/"
        names: set[str] = set()
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    names.add(common["Prefix"][len(full) :].rstrip("/"))
                for item in page.get("Contents", []):
                    names.add(item["Key"][len(full) :])
        except (ClientError, BotoCoreError) as error:
            raise self._fail("list", prefix, error) from error
        return sorted(names)

    def child(self, key: str) -> "S3Storage":
        storage = S3Storage(f"{self.uri}/{key.strip('/')}", self.endpoint, self.region)
        storage._client = self._client
        return storage


def open_storage(uri: str, endpoint: str = "", region: str = "") -> Storage:
    """An s3:// URI or a local path (file:// accepted)."""
    if uri.startswith("s3://"):
        return S3Storage(uri, endpoint, region)
    return LocalStorage(uri.removeprefix("file://"))
