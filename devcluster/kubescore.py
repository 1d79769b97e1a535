"""The real `kube-score`, built from its Go module and cached
(``python -m devcluster.kubescore --build``): the static checks a platform team's CI runs on
manifests."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from devcluster.build import cache_root, ensure_built, find_go, log, run_streaming

KUBE_SCORE_VERSION = "v1.20.0"
KUBE_SCORE_PACKAGE = "github.com/zegl/kube-score/cmd/kube-score"


def ensure_kube_score() -> Path:
    """The cached kube-score binary, built first if absent."""

    def build(work: Path) -> None:
        log("kube-score", f"building kube-score {KUBE_SCORE_VERSION} from its Go module")
        env = os.environ | {"CGO_ENABLED": "0", "GOBIN": str(work / "out"), "GOFLAGS": "-mod=mod"}
        command = [find_go(), "install", "-trimpath", "-ldflags=-s -w",
                   f"{KUBE_SCORE_PACKAGE}@{KUBE_SCORE_VERSION}"]  # fmt: skip
        run_streaming("kube-score", command, cwd=work, env=env)

    root = cache_root() / "kube-score" / KUBE_SCORE_VERSION
    return ensure_built(root, ["kube-score"], "kube-score", build) / "kube-score"


def kube_score(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ensure_kube_score()), *args], input=stdin, capture_output=True, text=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", action="store_true", help="build (if needed) and print the path")
    args = parser.parse_args(argv)
    if args.build:
        print(ensure_kube_score())
    return 0


if __name__ == "__main__":
    sys.exit(main())
