"""The real `helm`, built from its Go module and cached (``python -m devcluster.helm --build``)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from devcluster.build import cache_root, ensure_built, find_go, log, run_streaming

HELM_VERSION = "v3.22.0"
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"


def ensure_helm() -> Path:
    """The cached helm binary, built first if absent (about 2 minutes on 2 cores)."""

    def build(work: Path) -> None:
        log("helm", f"building helm {HELM_VERSION} from its Go module")
        ldflags = f"-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"
        env = os.environ | {"CGO_ENABLED": "0", "GOBIN": str(work / "out"), "GOFLAGS": "-mod=mod"}
        command = [find_go(), "install", "-trimpath", f"-ldflags={ldflags}",
                   f"{HELM_PACKAGE}@{HELM_VERSION}"]  # fmt: skip
        run_streaming("helm", command, cwd=work, env=env)

    return ensure_built(cache_root() / "helm" / HELM_VERSION, ["helm"], "helm", build) / "helm"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ensure_helm()), *args], capture_output=True, text=True, check=check)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", action="store_true", help="build (if needed) and print the path")
    args = parser.parse_args(argv)
    if args.build:
        print(ensure_helm())
    return 0


if __name__ == "__main__":
    sys.exit(main())
