"""The documentation: the README stays a front door, the manifest reference is what the models
say, and the site builds with no broken link."""

import os
import subprocess
import sys
from pathlib import Path

from quanteval.reference import render_reference

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_fits_150_lines() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_the_manifest_reference_is_current() -> None:
    committed = (ROOT / "docs" / "reference.md").read_text()
    assert committed == render_reference(), (
        "docs/reference.md is stale: `python -m quanteval.reference > docs/reference.md`"
    )


def test_every_spec_field_is_in_the_reference() -> None:
    reference = render_reference()
    for field in ("spec.report.equivalenceMarginPp", "spec.models[].baselineModel", "spec.tasks"):
        assert f"`{field}`" in reference


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "index.html").exists()
