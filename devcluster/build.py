"""Binaries built from Go modules, cached outside the repo (one build per machine).

Shared by the MinIO, Kubernetes and Helm builds: a cache root, an exclusive build lock, a build in
a temporary directory published by rename (a killed build never leaves half a binary behind), and
the go command's output streamed with a heartbeat, since cold builds take minutes.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

BUILD_TIMEOUT_S = 3600.0
HEARTBEAT_S = 30.0


class GoUnavailableError(RuntimeError):
    """No cached binary and no Go toolchain to build one."""


def cache_root() -> Path:
    """The quanteval cache root: ``$QUANTEVAL_CACHE_DIR`` or ``~/.cache/quanteval``."""
    env = os.environ.get("QUANTEVAL_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "quanteval"


def log(what: str, message: str) -> None:
    print(f"[{what}] {message}", file=sys.stderr, flush=True)


def find_go() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise GoUnavailableError("the Go toolchain is needed to build the test infrastructure")
    return go


def is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def ensure_built(
    target_dir: Path,
    names: list[str],
    what: str,
    build: Callable[[Path], None],
    *,
    unavailable: type[GoUnavailableError] = GoUnavailableError,
) -> Path:
    """`target_dir` holding every binary in `names`, built by `build(work_dir)` if absent.

    `build` writes the binaries into `work_dir/out`, which replaces `target_dir` in one rename.
    A missing Go toolchain is raised as `unavailable` (a :class:`GoUnavailableError`).
    """
    if all(is_executable(target_dir / n) for n in names):
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with (target_dir.parent / f".{target_dir.name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(what, "waiting for another build to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if all(is_executable(target_dir / n) for n in names):
            return target_dir
        for stale in target_dir.parent.glob(f".{target_dir.name}.build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.build-", dir=target_dir.parent))
        try:
            out = work / "out"
            out.mkdir()
            try:
                build(work)
            except GoUnavailableError as exc:
                raise unavailable(
                    f"{what}: {', '.join(names)} not cached in {target_dir} ({exc})"
                ) from exc
            missing = [n for n in names if not is_executable(out / n)]
            if missing:
                raise RuntimeError(f"{what}: the build produced no {', '.join(missing)}")
            shutil.rmtree(target_dir, ignore_errors=True)
            os.replace(out, target_dir)
            sizes = ", ".join(
                f"{n} {(target_dir / n).stat().st_size / 2**20:.0f} MiB" for n in names
            )
            log(what, f"built {target_dir} ({sizes})")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target_dir


def run_streaming(
    what: str,
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout_s: float = BUILD_TIMEOUT_S,
) -> None:
    """Run `cmd`, echoing its output to stderr with a heartbeat while it is silent."""
    log(what, f"$ {shlex.join(cmd)}  (in {cwd})")
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            log(f"{what} build", line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        while True:
            try:
                rc = proc.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - start
                if elapsed > timeout_s:
                    raise RuntimeError(f"{what} build timed out after {elapsed:.0f}s") from None
                log(what, f"still building ({elapsed:.0f}s elapsed)")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        reader.join(timeout=5)
    if rc != 0:
        raise RuntimeError(
            f"{what} build failed (exit {rc}): {shlex.join(cmd)}\n" + "\n".join(tail)
        )
    log(what, f"build finished in {time.monotonic() - start:.0f}s")
