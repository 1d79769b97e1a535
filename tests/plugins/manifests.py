"""The quick start's manifest as a path and as a dict, and a manifest writer, for every suite."""

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = REPO_ROOT / "manifests" / "examples" / "quickstart.yaml"

Manifest = dict[str, Any]
WriteManifest = Callable[[Manifest], Path]


@pytest.fixture
def quickstart_path() -> Path:
    return QUICKSTART


@pytest.fixture
def quickstart_dict() -> Manifest:
    """A fresh, mutable copy of the quickstart manifest."""
    document = yaml.safe_load(QUICKSTART.read_text())
    assert isinstance(document, dict)
    return copy.deepcopy(document)


@pytest.fixture
def write_manifest(tmp_path: Path) -> WriteManifest:
    """Write a manifest dict as YAML under tmp_path and return its path."""
    counter = 0

    def write(document: Manifest) -> Path:
        nonlocal counter
        counter += 1
        path = tmp_path / f"manifest-{counter}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        return path

    return write
