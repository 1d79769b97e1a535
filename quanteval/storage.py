"""Where results live: a local directory or an S3 prefix, behind one small interface.

Every write is whole-object: a local file is written to a temporary name and renamed, an S3 PUT
is atomic. A run's `result.json` is written last and marks the run complete.

An object store has outages of minutes. An S3 operation that fails because the store cannot be
reached (no connection, a timeout, a 5xx, throttling) is tried again with backoff until the store
has been down for the retry budget (`Patience`: QUANTEVAL_STORAGE_RETRY_SECONDS, default 10
minutes), and only then fails (exit 6). A refusal (no such bucket, wrong credentials) fails at
once. Each try is one request (the SDK's own retries are off): the backoff here is the whole
schedule, and a worker's write that cannot wait (`S3Storage.try_write`) costs one request, not
the SDK's four.
"""

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from quanteval.api.errors import StorageError

if TYPE_CHECKING:
    from collections.abc import Callable

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
        """The file, and the folders it leaves empty below the root (S3 keeps no folders: a
        finished run's partial/ goes with its last file)."""
        path = self.root / key
        try:
            path.unlink(missing_ok=True)
            for folder in path.parents:
                inside = folder != self.root and folder.is_relative_to(self.root)
                if not inside or not folder.is_dir() or any(folder.iterdir()):
                    break
                folder.rmdir()
        except OSError as error:
            raise StorageError(f"cannot delete {path}: {error.strerror}") from error

    def list_children(self, prefix: str) -> list[str]:
        directory = self.root / prefix
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))

    def child(self, key: str) -> "LocalStorage":
        return LocalStorage(self.root / key)


T = TypeVar("T")
_LOG = logging.getLogger(__name__)
RETRY_BUDGET_ENV: Final = "QUANTEVAL_STORAGE_RETRY_SECONDS"
RETRY_BUDGET_SECONDS: Final = 600.0
# Where a worker keeps what waits out an outage, and how much of its disk that may take.
SPOOL_DIR_ENV: Final = "QUANTEVAL_SPOOL_DIR"
SPOOL_LIMIT_ENV: Final = "QUANTEVAL_SPOOL_LIMIT_BYTES"
# Error codes of a store that is there but cannot serve now: tried again, like a lost connection.
UNAVAILABLE_CODES: Final = frozenset(
    {"SlowDown", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException",
     "PriorRequestNotComplete", "Throttling", "ThrottlingException", "TooManyRequestsException",
     "RequestLimitExceeded", "InternalError", "XMinioServerNotInitialized"}
)  # fmt: skip


def retry_budget() -> float:
    """The seconds a store may be down before an operation fails: the environment's, else 600."""
    value = os.environ.get(RETRY_BUDGET_ENV, "")
    try:
        return float(value) if value else RETRY_BUDGET_SECONDS
    except ValueError:
        raise StorageError(f"{RETRY_BUDGET_ENV}={value!r} is not a number of seconds") from None


@dataclass
class Patience:
    """One store's outage clock: it starts at the first failure that no success has followed and
    ends with the next success; operations wait with backoff (1 s doubling to 30 s) until the
    outage has lasted `budget` seconds. Shared by every prefix of the store (`child`)."""

    budget: float = field(default_factory=retry_budget)
    outage_began: float | None = None

    def down_for(self) -> float:
        return 0.0 if self.outage_began is None else time.monotonic() - self.outage_began

    def failed(self) -> float:
        """Record a failure; the seconds of the budget left."""
        if self.outage_began is None:
            self.outage_began = time.monotonic()
        return self.budget - self.down_for()

    def succeeded(self) -> None:
        self.outage_began = None


@dataclass
class Backoff:
    """The waits between tries of a store that is down: 1 s, doubling to 30 s."""

    delay: float = 1.0

    def next(self) -> float:
        """The wait now; the one after it doubled."""
        wait, self.delay = self.delay, min(2 * self.delay, 30.0)
        return wait


def is_unavailable(error: Exception) -> bool:
    """The store could not be reached or could not serve (worth trying again), as opposed to a
    refusal (no such bucket, wrong credentials, a missing key)."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    # ConnectionError: refused, unresolved, connect timeout; HTTPClientError: closed, read timeout
    if isinstance(error, BotoConnectionError | HTTPClientError):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.response.get("Error", {}).get("Code", "")
        return status >= 500 or status == 429 or code in UNAVAILABLE_CODES
    return False


class _StillDown(Exception):
    """The store is unavailable and the outage is within the budget: `left` seconds of it."""

    def __init__(self, left: float) -> None:
        super().__init__(left)
        self.left = left


class S3Storage:
    def __init__(
        self, uri: str, endpoint: str = "", region: str = "", patience: Patience | None = None
    ) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise StorageError(f"{uri}: an S3 URI needs a bucket (s3://bucket/prefix)")
        self.uri = uri.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3", "")
        self.region = region
        self.patience = patience or Patience()
        self._client: S3Client | None = None

    @property
    def client(self) -> "S3Client":
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 1, "mode": "standard"},  # the retries are ours
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
        outage = self.patience.down_for()
        after = (
            f" (the store has been unreachable for {outage:.0f} s, over the retry budget of "
            f"{self.patience.budget:.0f} s: {RETRY_BUDGET_ENV})"
            if self.patience.outage_began is not None and is_unavailable(error)
            else ""
        )
        return StorageError(
            f"cannot {action} s3://{self.bucket}/{self._key(key)}{where}: {error}{after}"
        )

    def _unavailable(self, error: Exception) -> float:
        """An unavailable store's failure recorded, said once an outage (whoever is waiting
        should know why); the seconds of the budget left."""
        if self.patience.outage_began is None:
            _LOG.warning(
                "the store at %s is unreachable (%s); trying again for up to %.0f s (%s)",
                self.endpoint or f"s3://{self.bucket}",
                error,
                self.patience.budget,
                RETRY_BUDGET_ENV,
            )
        return self.patience.failed()

    def _once(self, action: str, key: str, operation: "Callable[[], T]") -> T:
        """`operation` once: its value; _StillDown where the store is unavailable and the
        outage is within the budget; a StorageError past it or on any other error."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            value = operation()
        except (ClientError, BotoCoreError) as error:
            left = self._unavailable(error) if is_unavailable(error) else 0.0
            if left <= 0:
                raise self._fail(action, key, error) from error
            raise _StillDown(left) from error
        self.patience.succeeded()
        return value

    def _patiently(self, action: str, key: str, operation: "Callable[[], T]") -> T:
        """`operation`, tried again with backoff while the store is unavailable and the outage
        has lasted less than the budget; any other error at once."""
        backoff = Backoff()
        while True:
            try:
                return self._once(action, key, operation)
            except _StillDown as down:
                time.sleep(min(backoff.next(), down.left))

    def _put(self, key: str, data: bytes) -> "Callable[[], object]":
        return lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def try_write(self, key: str, data: bytes) -> bool:
        """One PUT: False where the store is unavailable and the outage is within the budget
        (the caller keeps the data for later), a StorageError past it or on a refusal."""
        try:
            self._once("write", key, self._put(key, data))
        except _StillDown:
            return False
        return True

    def read_text(self, key: str) -> str | None:
        data = self.read_bytes(key)
        return None if data is None else data.decode()

    def read_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        def get() -> bytes | None:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            data: bytes = body.read()
            return data

        return self._patiently("read", key, get)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._patiently("write", key, self._put(key, data))

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode())

    def delete(self, key: str) -> None:
        self._patiently(
            "delete",
            key,
            lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)),
        )

    def list_children(self, prefix: str) -> list[str]:
        full = self._key(prefix).rstrip("/") + "/"

        def names() -> list[str]:
            found: set[str] = set()
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    found.add(common["Prefix"][len(full) :].rstrip("/"))
                for item in page.get("Contents", []):
                    found.add(item["Key"][len(full) :])
            return sorted(found)

        return self._patiently("list", prefix, names)

    def child(self, key: str) -> "S3Storage":
        storage = S3Storage(
            f"{self.uri}/{key.strip('/')}", self.endpoint, self.region, self.patience
        )
        storage._client = self._client
        return storage


def open_storage(uri: str, endpoint: str = "", region: str = "") -> Storage:
    """An s3:// URI or a local path (file:// accepted)."""
    if uri.startswith("s3://"):
        return S3Storage(uri, endpoint, region)
    return LocalStorage(uri.removeprefix("file://"))
