"""The suites' shared fixtures, as plugins (no suite imports another's conftest): the real S3
server, the models (SmolLM2 from its wheel, tiny models built from configs), the real control
plane, and the quick start's manifest."""

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.plugins.s3",
    "tests.plugins.models",
    "tests.plugins.cluster",
    "tests.plugins.manifests",
]

# The tiers, by folder: `cluster` needs the real control plane, `model` loads a real model.
# `make test-fast` runs what has neither (and nothing `slow`).
TIERS = {"operator": "cluster", "devcluster": "cluster", "worker": "model"}
# tests/artifacts/ checks the chart, install.yaml, Dockerfiles and GitOps health (helm, kube-score,
# hadolint binaries; no cluster); tests/unit/ is plain logic.
HERE = Path(__file__).parent
# tests/vllm/ runs in .venv-vllm, by its own pytest (scripts/run-tests.sh): never here.
collect_ignore = ["vllm"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(HERE).parts[0] if item.path.is_relative_to(HERE) else ""
        if folder in TIERS:
            item.add_marker(TIERS[folder])
