"""The unit suites' names for the shared manifest fixtures (tests/plugins/manifests.py)."""

from tests.plugins.manifests import QUICKSTART, REPO_ROOT, Manifest, WriteManifest

__all__ = ["QUICKSTART", "REPO_ROOT", "Manifest", "WriteManifest"]
