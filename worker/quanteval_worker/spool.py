"""A run's writes while its object store is down: the work goes on, its output waits on disk.

A write the store cannot take (quanteval.storage.is_unavailable) is kept, in order, in a spool
directory on the pod's disk (an emptyDir counted in the Job's ephemeral-storage request), and goes
up before a later write or at `flush`, which waits for the store until its retry budget is spent.
While the store is down a write tries it at most once a backoff interval (1 s doubling to 30 s),
so a worker's writes cost it one request now and then, never a wait.
The order holds: `result.json`, the run's commit mark, is written after everything before it. A
spool that would outgrow its share of the disk fails at once (exit 6), naming the size.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

from quanteval.api.errors import StorageError
from quanteval.fmt import human_bytes
from quanteval.storage import SPOOL_DIR_ENV, SPOOL_LIMIT_ENV, Backoff, S3Storage, Storage
from quanteval_worker.events import log


class SpooledStorage:
    """An S3 run directory whose writes never wait on an outage (reads do: they wait with
    backoff, as S3Storage's)."""

    def __init__(self, inner: S3Storage, parent: Path | None, limit: int | None) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.parent = parent  # the spool is a directory of its own under it, made when needed
        self.directory: Path | None = None
        self.limit = limit
        self.pending: list[tuple[str, Path, int]] = []  # key, its bytes on disk, their size
        self._written = 0  # files spooled, for their names
        self._try_at = 0.0  # while the store is down: when a write may try it again
        self._backoff = Backoff()

    @property
    def spooled_bytes(self) -> int:
        return sum(size for _, _, size in self.pending)

    def write_bytes(self, key: str, data: bytes) -> None:
        try:
            if time.monotonic() >= self._try_at:
                self._drain()
                if not self.pending and self._tried(self.inner.try_write(key, data)):
                    return
        except StorageError as error:  # past the budget, or refused
            raise self._unwritten(error, [key]) from error
        self._spool(key, data)

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode())

    def flush(self) -> None:
        """Every spooled write made, in order, waiting for the store with backoff until its
        retry budget is spent (a StorageError then names what was not written)."""
        while self.pending:
            key, path, _ = self.pending[0]
            try:
                self.inner.write_bytes(key, path.read_bytes())
            except StorageError as error:
                raise self._unwritten(error) from error
            self._done()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def _drain(self) -> None:
        """What is spooled, written while the store takes it (one try each)."""
        while self.pending:
            key, path, _ = self.pending[0]
            if not self._tried(self.inner.try_write(key, path.read_bytes())):
                return
            self._done()
            if not self.pending:
                log("the store is back: what waited on disk is written", uri=self.uri)

    def _tried(self, written: bool) -> bool:
        """`written`, the next try put off by the backoff where it was not."""
        if written:
            self._try_at, self._backoff = 0.0, Backoff()
        else:
            self._try_at = time.monotonic() + self._backoff.next()
        return written

    def _done(self) -> None:
        _, path, _ = self.pending.pop(0)
        path.unlink(missing_ok=True)

    def _spool(self, key: str, data: bytes) -> None:
        size = self.spooled_bytes + len(data)
        if self.limit is not None and size > self.limit:
            raise StorageError(
                f"cannot write {self.uri}/{key}: the store at "
                f"{self.inner.endpoint or 'AWS S3'} is unreachable, and what waits for it would "
                f"take {human_bytes(size)} of this pod's disk, over the {human_bytes(self.limit)} "
                f"the Job requested for it ({SPOOL_LIMIT_ENV}); not written: "
                f"{self._keys([key])}"
            )
        if self.directory is None:
            if self.parent is not None:
                self.parent.mkdir(parents=True, exist_ok=True)
            self.directory = Path(tempfile.mkdtemp(prefix="quanteval-spool-", dir=self.parent))
        path = self.directory / f"{self._written:06d}"
        path.write_bytes(data)
        self._written += 1
        self.pending.append((key, path, len(data)))
        log(
            "the store is unreachable: the write waits on this pod's disk until it returns",
            level="warning",
            key=key,
            spooledBytes=size,
            downSeconds=round(self.inner.patience.down_for(), 1),
        )

    def _keys(self, more: list[str] | None = None) -> str:
        return ", ".join(dict.fromkeys([key for key, _, _ in self.pending] + (more or [])))

    def _unwritten(self, error: StorageError, more: list[str] | None = None) -> StorageError:
        """`error`, naming what waited in the spool (and `more`) and so was never written."""
        return StorageError(f"{error.message}; not written: {self._keys(more)}")

    def read_bytes(self, key: str) -> bytes | None:
        for pending, path, _ in reversed(self.pending):  # the latest write of it, not yet up
            if pending == key:
                return path.read_bytes()
        try:
            return self.inner.read_bytes(key)
        except StorageError as error:  # past the budget: say what waited in vain too
            if not self.pending:
                raise
            raise self._unwritten(error) from error

    def read_text(self, key: str) -> str | None:
        data = self.read_bytes(key)
        return None if data is None else data.decode()

    def delete(self, key: str) -> None:
        """Gone, and so are its spooled writes (which would otherwise bring it back)."""
        for _, path, _ in (p for p in self.pending if p[0] == key):
            path.unlink(missing_ok=True)
        self.pending = [p for p in self.pending if p[0] != key]
        self.inner.delete(key)

    def list_children(self, prefix: str) -> list[str]:
        return self.inner.list_children(prefix)

    def child(self, key: str) -> Storage:
        return self.inner.child(key)


def spooled(storage: Storage) -> Storage:
    """A run's output storage as the worker writes it: S3's spooled, a local directory's as it
    is (a local disk has no outages to wait out)."""
    if not isinstance(storage, S3Storage):
        return storage
    parent = os.environ.get(SPOOL_DIR_ENV)  # a pod's /tmp; else the machine's temporary one
    limit = os.environ.get(SPOOL_LIMIT_ENV, "")
    try:
        size = int(limit) if limit else None
    except ValueError:
        raise StorageError(f"{SPOOL_LIMIT_ENV}={limit!r} is not a number of bytes") from None
    return SpooledStorage(storage, Path(parent) if parent else None, size)
