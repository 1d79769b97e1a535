"""A run cut off while it generates resumes after its last complete batch: `quanteval run --local`
killed with its worker (SIGKILL, or Ctrl-C's SIGINT) and run again goes on from `partial/` and
ends with the texts of an uninterrupted run, its attempts recorded."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from quanteval.api.result import EnergyFigures, RunResult
from tests.builders import make_manifest

from .local_runs import run_locally

SAMPLES = 20  # 2 emotions x 5 prompts x 2 samples, in batches of 2
PROGRESS = re.compile(r"tiny-fp32: (\d+)/20 samples")


def _manifest(model: Path) -> dict[str, Any]:
    return make_manifest(
        "resume",
        [{"name": "tiny", "source": str(model)}],
        precisions=["fp32"],
        emotions=["joy", "anger"],
        prompts=[f"Prompt {i} about <class>" for i in range(5)],
        generation={
            "preset": "paper",  # sampled: every sample's seed is its own, whatever its batch
            "promptFormat": "chat",
            "maxNewTokens": 48,
            "samplesPerPrompt": 2,
            "batchSize": 2,
        },
    )


def _texts(out: Path) -> dict[str, str]:
    lines = (out / "runs" / "tiny-fp32" / "generations.jsonl").read_text().splitlines()
    return {record["key"]: record["text"] for record in map(json.loads, lines)}


def _cut_off(manifest: Path, out: Path, how: signal.Signals) -> int:
    """`quanteval run --local` and its worker stopped by `how` once some batches, not all, are
    done; the samples done by then."""
    command = [sys.executable, "-m", "quanteval_cli.main", "run", str(manifest), "--local"]
    with subprocess.Popen(
        [*command, "--out", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # a group of its own: the signal reaches the worker too
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            found = PROGRESS.search(line)
            if found and 0 < int(found.group(1)) < SAMPLES:
                os.killpg(process.pid, how)
                break
        else:
            pytest.fail("the run ended before it could be cut off")
        process.wait(timeout=120)
        assert process.returncode != 0
        return int(found.group(1))


@pytest.fixture(scope="module")
def whole(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The texts of the run never cut off."""
    return _texts(run_locally(_manifest(tiny_llama_dir), tmp_path_factory.mktemp("whole")).out)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_a_run_cut_off_while_generating_resumes_after_its_last_batch(
    tiny_llama_dir: Path, tmp_path: Path, how: signal.Signals, whole: dict[str, str]
) -> None:
    document = _manifest(tiny_llama_dir)
    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(document))
    out = tmp_path / "cut"

    done = _cut_off(manifest, out, how)
    partial = out / "runs" / "tiny-fp32" / "partial"
    plan = json.loads((partial / "generation-plan.json").read_text())
    finished = sum(len(batch) for batch in plan["batches"])
    assert done <= finished < SAMPLES  # every batch it reported, and not all of them

    again = subprocess.run(
        [sys.executable, "-m", "quanteval_cli.main", "run", str(manifest), "--local",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    progress = [int(m.group(1)) for m in PROGRESS.finditer(again.stderr)]
    assert progress[0] == finished  # "N/20 samples" first: resumed, not begun again
    assert _texts(out) == whole  # as if never cut off
    result = RunResult.model_validate_json((out / "runs/tiny-fp32/result.json").read_text())
    assert [a.attempt for a in result.attempts] == [1, 2]
    assert result.metrics.resumed_samples == finished
    assert f"resumed: {finished} of 20 samples" in (out / "report.md").read_text()
    first, second = result.attempts
    assert len(first.batches) == len(plan["batches"]) and first.peak_memory_bytes is None
    assert second.batches == list(range(len(first.batches), SAMPLES // 2))
    assert result.metrics.cpu_seconds is not None
    assert result.metrics.cpu_seconds > second.cpu_seconds  # summed over the attempts
    if isinstance(result.energy, EnergyFigures):  # where the machine has a counter (RAPL here)
        assert first.generation_joules is not None and second.generation_joules is not None
        summed = first.generation_joules + second.generation_joules
        assert result.energy.phases["generation"] == pytest.approx(summed)
    assert not partial.exists() or not any(partial.iterdir())  # removed with result.json
