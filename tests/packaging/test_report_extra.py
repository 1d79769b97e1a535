"""`pip install 'quanteval[report]'` into a fresh venv, without torch, builds every report format
from a stored evaluation: what a researcher does on a laptop with an evaluation's output."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quanteval.api.layout import REPORT_FILES
from quanteval.precisions import Precision
from tests.builders import make_result, write_run

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "quanteval", "worker", "operator", "cli")
CACHES = shutil.ignore_patterns("__pycache__", "*.egg-info")


def _uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local/bin/uv")
    if not Path(found).exists():
        pytest.fail("uv is missing: scripts/setup-venv.sh installs it (it installs this venv too)")
    return found


@pytest.mark.slow
def test_the_report_extra_builds_every_report_format_without_torch(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    uv = _uv()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run(
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env
    )
    source = tmp_path / "source"  # a copy, as the images take it: the build writes build/ there
    source.mkdir()
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=CACHES)
        else:
            shutil.copy(REPO_ROOT / name, source / name)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin/python"),
            f"{source}[report]",
        ],
        check=True,
        env=env,
        timeout=900,
    )
    python = str(venv / "bin/python")
    probe = "import importlib.util as u; print(u.find_spec('torch') is None)"
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout == "True\n"

    root = tmp_path / "eval"
    samples = {(1, "anger", 0): ("a storm", 0.75), (1, "joy", 0): ("a sunny day", 0.6)}
    for precision, f1, weights in ((Precision.FP32, 0.8, 4000), (Precision.INT8, 0.7, 1000)):
        result = make_result("m", precision, f1=f1, weights=weights, peak=weights, seconds=2.0)
        write_run(root, f"m-{precision.value}", result, samples)
    done = subprocess.run(
        [str(venv / "bin/quanteval"), "report", str(root)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    for name in REPORT_FILES:
        assert (root / name).stat().st_size > 0, name
    assert (root / "report.png").read_bytes().startswith(b"\x89PNG")
    assert 'id="comparison-table"' in (root / "report.html").read_text()
