"""A real S3 server for storage tests: MinIO, built from its Go module and cached outside the repo.

The binary lives at ``$QUANTEVAL_CACHE_DIR/minio/<MINIO_VERSION>/minio`` (cache root defaults to
``~/.cache/quanteval``). The first call to :func:`ensure_minio` builds it with the Go toolchain
(several minutes on 2 cores, ~1.3 GiB of Go modules downloaded through the module proxy).

Pre-build from CI with ``python -m devcluster.minio --build``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from devcluster.build import (
    GoUnavailableError,
    cache_root,
    ensure_built,
    find_go,
    log,
    run_streaming,
)
from devcluster.ports import free_port

# RELEASE.2025-10-15T17-29-55Z (commit 9e49d5e7a648). MinIO tags are not semver, so the module
# proxy only knows this commit by its pseudo-version.
MINIO_VERSION = "v0.0.0-20251015172955-9e49d5e7a648"
MINIO_RELEASE = "RELEASE.2025-10-15T17-29-55Z"
MINIO_MODULE = "github.com/minio/minio"

# The public checksum database does not serve this pseudo-version, so the module's hashes are
# pinned here (dependencies are still verified against sum.golang.org by the go command).
_GO_SUM = (
    f"{MINIO_MODULE} {MINIO_VERSION} h1:6TdolSCLSs2nwm8i0PpWDqf9iX2Ty9WQK8wmr7dCnUM=\n"
    f"{MINIO_MODULE} {MINIO_VERSION}/go.mod h1:yCWDkwWO9IWpGsT4mreDDN/B/QVmK2zC666uInRAcqE=\n"
)
_GO_MOD = (
    f"module quanteval.local/minio-build\n\ngo 1.24.0\n\nrequire {MINIO_MODULE} {MINIO_VERSION}\n"
)
_TOOLS_GO = f'//go:build tools\n\npackage tools\n\nimport _ "{MINIO_MODULE}"\n'

_REGION = "us-east-1"


class MinioUnavailableError(GoUnavailableError):
    """No cached binary and no Go toolchain to build one."""


def minio_binary_path() -> Path:
    """Where the pinned MinIO binary is (or will be) cached."""
    return cache_root() / "minio" / MINIO_VERSION / "minio"


def _log(message: str) -> None:
    log("minio", message)


def ensure_minio() -> Path:
    """Return the cached MinIO binary, building it first if it is absent."""
    target = minio_binary_path()
    ensure_built(target.parent, [target.name], "minio", _build, unavailable=MinioUnavailableError)
    return target


def _build(work: Path) -> None:
    """Build MinIO into ``work/out/minio`` (:func:`ensure_built` publishes it)."""
    go = find_go()
    (work / "go.mod").write_text(_GO_MOD)
    (work / "go.sum").write_text(_GO_SUM)
    (work / "tools.go").write_text(_TOOLS_GO)
    cmd = [go, "build", "-mod=mod", "-trimpath", "-ldflags=-s -w",
           "-o", str(work / "out" / "minio"), MINIO_MODULE]  # fmt: skip
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "", "GOWORK": "off"}
    _log(f"building MinIO {MINIO_RELEASE} ({MINIO_VERSION}); this takes several minutes")
    run_streaming("minio", cmd, cwd=work, env=env)


class MinioServer:
    """A throwaway single-drive MinIO server on 127.0.0.1, as a context manager."""

    def __init__(
        self,
        binary: Path | None = None,
        *,
        access_key: str = "quanteval-test",
        secret_key: str | None = None,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.binary = binary
        self.access_key = access_key
        self.secret_key = secret_key if secret_key is not None else secrets.token_hex(16)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.port = 0
        self.console_port = 0
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """Its URL, while it runs or is halted (an outage keeps the address)."""
        if self.workdir is None:
            raise RuntimeError("MinioServer is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return None if self.workdir is None else self.workdir / "minio.log"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("MinioServer already started")
        binary = self.binary if self.binary is not None else ensure_minio()
        self.workdir = Path(tempfile.mkdtemp(prefix="quanteval-minio-"))
        try:
            # A free port can be taken between probing and binding; retry on a fresh pair.
            for attempt in range(3):
                if self._start_once(binary):
                    return
                _log(f"MinIO exited during startup (attempt {attempt + 1} of 3)")
            raise RuntimeError(f"MinIO failed to start; log tail:\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _start_once(self, binary: Path) -> bool:
        """Start the process; True once ready, False if it exited early (e.g. port clash)."""
        self.port, self.console_port = free_port(), free_port()
        return self._launch(binary)

    def halt(self) -> None:
        """Stop the server process, keeping its port, data and credentials: an outage."""
        if self._proc is None:
            raise RuntimeError("MinioServer is not running")
        self._end_process()

    def _end_process(self) -> None:
        """SIGTERM, then SIGKILL after the stop timeout."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def resume(self) -> None:
        """Start the halted server again on the same port and data."""
        if self._proc is not None or self.workdir is None:
            raise RuntimeError("MinioServer is not halted")
        binary = self.binary if self.binary is not None else ensure_minio()
        if not self._launch(binary):
            raise RuntimeError(f"MinIO did not start again; log tail:\n{self._log_tail()}")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server and start it again on the same port and data `down_seconds` later,
        as clients see an outage of the store."""
        self.halt()
        time.sleep(down_seconds)  # the outage's length is what is being tested, not a wait
        self.resume()

    def _launch(self, binary: Path) -> bool:
        """Start the process on self.port; True once ready, False if it exited early."""
        assert self.workdir is not None
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINIO_")}
        env.update(
            MINIO_ROOT_USER=self.access_key,
            MINIO_ROOT_PASSWORD=self.secret_key,
            MINIO_UPDATE="off",
        )
        cmd = [
            str(binary),
            "server",
            str(data),
            "--address",
            f"127.0.0.1:{self.port}",
            "--console-address",
            f"127.0.0.1:{self.console_port}",
            "--certs-dir",
            str(self.workdir / "certs"),  # default is ~/.minio/certs; keep $HOME untouched
            "--quiet",
        ]
        self._close_log()
        assert self.log_path is not None
        self._log_file = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://127.0.0.1:{self.port}/minio/health/ready"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            # Refused connections, HTTPError (e.g. 503 while starting) are all OSErrors.
            with contextlib.suppress(OSError), opener.open(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return True
            time.sleep(0.05)
        raise TimeoutError(
            f"MinIO not ready at {url} after {self.startup_timeout_s:.0f}s; "
            f"log tail:\n{self._log_tail()}"
        )

    def stop(self) -> None:
        self._end_process()
        self._close_log()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _log_tail(self, lines: int = 30) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def client(self) -> Any:
        """A boto3 S3 client bound to this server."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=_REGION,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def env(self) -> dict[str, str]:
        """Environment variables pointing AWS SDKs/CLIs (in subprocesses) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_DEFAULT_REGION": _REGION,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.minio", description=__doc__)
    parser.add_argument(
        "--build", action="store_true", help="build the pinned MinIO if needed; print its path"
    )
    args = parser.parse_args(argv)
    if not args.build:
        parser.print_help()
        return 2
    print(ensure_minio())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
