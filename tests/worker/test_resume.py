"""A run cut off while it generates resumes after its last complete batch: `quanteval run --local`
killed with its worker (SIGKILL), run again and stopped with Ctrl-C (SIGINT), and run a third time
goes on from `partial/` each time and ends with the texts of an uninterrupted run, its attempts
recorded."""

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


def _ctrl_c_heard() -> None:
    """SIGINT as a terminal sends it, heard: a suite started in the background (`cmd &`) runs
    with SIGINT ignored, which its children inherit, and Python then installs no
    KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cut_off(manifest: Path, out: Path, how: signal.Signals, past: int = 0) -> tuple[int, int]:
    """`quanteval run --local` and its worker stopped by `how` once more than `past` samples,
    not all, are done: the first progress it printed, and the samples done when it was cut."""
    command = [sys.executable, "-m", "quanteval_cli.main", "run", str(manifest), "--local"]
    with subprocess.Popen(
        [*command, "--out", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # a group of its own: the signal reaches the worker too
        preexec_fn=_ctrl_c_heard,
    ) as process:
        assert process.stderr is not None
        first: int | None = None
        for line in process.stderr:
            found = PROGRESS.search(line)
            if found is None:
                continue
            done = int(found.group(1))
            first = done if first is None else first
            if past < done < SAMPLES:
                os.killpg(process.pid, how)
                break
        else:
            pytest.fail("the run ended before it could be cut off")
        process.wait(timeout=120)
        assert process.returncode != 0
        assert first is not None
        return first, done


def _finished(out: Path) -> tuple[int, int]:
    """The batches and samples partial/ holds."""
    plan = json.loads((out / "runs/tiny-fp32/partial/generation-plan.json").read_text())
    return len(plan["batches"]), sum(len(batch) for batch in plan["batches"])


@pytest.fixture(scope="module")
def whole(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The texts of the run never cut off."""
    return _texts(run_locally(_manifest(tiny_llama_dir), tmp_path_factory.mktemp("whole")).out)


def test_a_run_cut_off_twice_while_generating_resumes_after_its_last_batch_each_time(
    tiny_llama_dir: Path, tmp_path: Path, whole: dict[str, str]
) -> None:
    """Killed with its worker (SIGKILL, a crash), then the run that resumed stopped with
    Ctrl-C's SIGINT: each run again goes on after the last complete batch, and the third ends
    with the texts of the run never cut off, its three attempts recorded."""
    document = _manifest(tiny_llama_dir)
    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(document))
    out = tmp_path / "cut"

    began, done = _cut_off(manifest, out, signal.SIGKILL)
    batches, finished = _finished(out)
    assert began == 0 and done <= finished < SAMPLES  # every batch it reported, not all
    resumed_at, done = _cut_off(manifest, out, signal.SIGINT, past=finished)
    assert resumed_at == finished  # "N/20 samples" first: resumed, not begun again
    batches_then, finished_then = _finished(out)
    assert finished < done <= finished_then < SAMPLES

    again = subprocess.run(
        [sys.executable, "-m", "quanteval_cli.main", "run", str(manifest), "--local",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    progress = [int(m.group(1)) for m in PROGRESS.finditer(again.stderr)]
    assert progress[0] == finished_then
    assert _texts(out) == whole  # as if never cut off
    result = RunResult.model_validate_json((out / "runs/tiny-fp32/result.json").read_text())
    assert [a.attempt for a in result.attempts] == [1, 2, 3]
    assert result.metrics.resumed_samples == finished_then
    assert f"resumed: {finished_then} of 20 samples" in (out / "report.md").read_text()
    first, second, third = result.attempts
    assert len(first.batches) == batches and first.peak_memory_bytes is None
    assert second.batches == list(range(batches, batches_then))
    assert second.peak_memory_bytes is None
    assert third.batches == list(range(batches_then, SAMPLES // 2))
    assert result.metrics.cpu_seconds is not None
    assert result.metrics.cpu_seconds > third.cpu_seconds  # summed over the attempts
    if isinstance(result.energy, EnergyFigures):  # where the machine has a counter (RAPL here)
        joules = [a.generation_joules for a in result.attempts]
        assert None not in joules
        assert result.energy.phases["generation"] == pytest.approx(sum(j or 0 for j in joules))
    assert not (out / "runs/tiny-fp32/partial").exists()  # removed with result.json
