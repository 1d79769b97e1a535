"""scripts/gpu-check.sh end to end on this machine: a tiny shape, so it runs anywhere.

On a GPU machine the same script runs the GPU tests and the Llama-2-7B-shape table; here the GPU
tests skip and the table is a CPU's, which is enough to show the script and the table work.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_check_writes_a_table_row_per_precision(tmp_path: Path) -> None:
    env = os.environ | {
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
        "WHEELS": str(tmp_path / "no-wheels"),  # this Python has them all
        "LAYERS": "1",
        "GPU_TABLE_ARGS": "--tiny --precisions fp32,nf4 --new-tokens 4",
    }
    done = subprocess.run(
        ["bash", "scripts/gpu-check.sh"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "torch" in (tmp_path / "environment.txt").read_text()
    table = (tmp_path / "gpu-table.md").read_text()
    assert "a tiny shape, 1 layers" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("|")}
    for precision in ("fp32", "nf4"):
        cells = [c.strip() for c in rows[precision].split("|")[2:-1]]
        assert "failed" not in rows[precision]
        assert float(cells[0]) > 0  # weights GiB
        ttft_alone, ttft_batch = (float(v) for v in cells[3].split(" / "))
        assert ttft_alone > 0 and ttft_batch > 0
        assert cells[-1].endswith("/4")  # samples alone against the batch, counted
