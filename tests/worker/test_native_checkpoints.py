"""Precision native on checkpoints quantized before we got them (bitsandbytes int8 and nf4,
torchao int8 weight-only), each compared with the plain model it came from (baselineModel); and
the refusals: native on a plain checkpoint, a quantizing precision on a quantized one."""

import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quanteval.api.errors import ExitCode
from quanteval.api.result import CheckpointQuantization
from quanteval.api.spec import parse_manifest
from quanteval.matrix import build_run_spec, expand

from .local_runs import (
    SAMPLES,
    Evaluation,
    native_entry,
    run_locally,
    tiny_manifest,
)


@dataclass(frozen=True)
class Quantized:
    """A pre-quantized checkpoint the test writes, and what its run should record."""

    name: str  # the manifest's model entry
    package: str  # what quantizing and loading it needs
    expected: CheckpointQuantization

    @property
    def run_id(self) -> str:
        return f"{self.name}-native"


CHECKPOINTS = (
    Quantized(
        "tiny-int8",
        "bitsandbytes",
        CheckpointQuantization(method="bitsandbytes", bits=8, group_size=None, kind="LLM.int8"),
    ),
    Quantized(
        "tiny-nf4",
        "bitsandbytes",
        CheckpointQuantization(method="bitsandbytes", bits=4, group_size=64, kind="nf4"),
    ),
    Quantized(
        "tiny-torchao",
        "torchao",
        CheckpointQuantization(
            method="torchao", bits=8, group_size=None, kind="Int8WeightOnlyConfig"
        ),
    ),
)


def _importable(package: str) -> bool:
    try:
        importlib.import_module(package)
    except Exception:  # bitsandbytes raises more than ImportError where its library is missing
        return False
    return True


def _require(package: str) -> None:
    if not _importable(package):
        pytest.skip(f"{package} does not import here")


def _quantization_config(name: str) -> tuple[Any, Any]:
    """transformers' quantization config for the checkpoint `name`, and the dtype it loads in."""
    import torch
    from transformers import BitsAndBytesConfig, TorchAoConfig

    if name == "tiny-int8":
        return BitsAndBytesConfig(load_in_8bit=True), torch.float32
    if name == "tiny-nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"), torch.float32
    from torchao.quantization import Int8WeightOnlyConfig

    return TorchAoConfig(Int8WeightOnlyConfig()), torch.bfloat16


def _save_quantized(plain: Path, name: str, directory: Path) -> Path:
    """Quantize the plain checkpoint on the CPU and save it as a pre-quantized checkpoint, with
    the plain one's tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, dtype = _quantization_config(name)
    model = AutoModelForCausalLM.from_pretrained(
        plain, quantization_config=config, dtype=dtype, device_map={"": "cpu"}
    )
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(plain).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def quantized_dirs(plain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each checkpoint whose package imports here, by entry name."""
    return {
        c.name: _save_quantized(plain_dir, c.name, tmp_path_factory.mktemp(c.name))
        for c in CHECKPOINTS
        if _importable(c.package)
    }


@pytest.fixture(scope="module")
def evaluation(
    plain_dir: Path, quantized_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Evaluation:
    """One `quanteval run --local`: the plain model at fp32, each quantized one at native."""
    if not quantized_dirs:
        pytest.skip("neither bitsandbytes nor torchao imports here")
    models = [{"name": "tiny", "source": str(plain_dir)}]
    models += [native_entry(name, path) for name, path in quantized_dirs.items()]
    return run_locally(tiny_manifest("native", models), tmp_path_factory.mktemp("native-eval"))


@pytest.mark.parametrize("checkpoint", CHECKPOINTS, ids=[c.name for c in CHECKPOINTS])
def test_a_native_run_records_the_checkpoint_and_its_baseline_model(
    evaluation: Evaluation, checkpoint: Quantized
) -> None:
    _require(checkpoint.package)
    assert f"{checkpoint.run_id}: Succeeded" in evaluation.stderr, evaluation.stderr[-2000:]
    result = evaluation.result(checkpoint.run_id)
    assert (result.model, result.precision) == (checkpoint.name, "native")
    assert result.checkpoint_quantization == checkpoint.expected
    assert result.baseline_model == "tiny"
    assert result.metrics.samples == SAMPLES
    assert result.environment["quantization"]["quant_method"] == checkpoint.expected.method
    # The plain model's own runs record neither.
    plain = evaluation.result("tiny-fp32")
    assert plain.checkpoint_quantization is None and plain.baseline_model is None


@pytest.mark.parametrize("checkpoint", CHECKPOINTS, ids=[c.name for c in CHECKPOINTS])
def test_the_report_compares_a_native_run_with_the_baseline_models_run(
    evaluation: Evaluation, checkpoint: Quantized
) -> None:
    _require(checkpoint.package)
    base = evaluation.run("tiny-fp32")
    assert base.is_baseline and base.checkpoint == ""
    run = evaluation.run(checkpoint.run_id)
    assert run.state == "Succeeded" and not run.is_baseline
    assert run.checkpoint == checkpoint.expected.describe()
    against = run.vs_baseline
    assert against is not None and against.baseline_run_id == "tiny-fp32"
    assert against.matched_samples == SAMPLES
    assert against.weights_saving_pct is not None and against.weights_saving_pct > 0
    assert against.paired is not None
    assert (against.paired.pairs, against.paired.unpaired) == (SAMPLES, 0)
    assert against.paired.verdict.startswith("cannot decide")  # two samples a run
    # The same tokenizer scored the same reference corpus: fidelity figures, not a reason.
    assert against.fidelity_unavailable is None
    assert against.fidelity is not None and against.fidelity.positions > 0
    assert against.fidelity.mean_kl >= 0
    # The CLI's comparison says the same.
    row = evaluation.rows[checkpoint.run_id]
    assert row["state"] == "Succeeded" and row["isBaseline"] is False
    assert row["weightsSavingPct"] is not None and row["weightsSavingPct"] > 0
    assert row["verdict"].startswith("cannot decide") and row["meanKl"] is not None
    assert evaluation.rows["tiny-fp32"]["isBaseline"] is True


def test_the_markdown_names_each_checkpoints_quantization(evaluation: Evaluation) -> None:
    lines = evaluation.markdown.splitlines()
    assert any(line.startswith("| tiny-fp32 (baseline) |") for line in lines)
    cells = {
        "tiny-int8": "tiny-int8-native (bitsandbytes LLM.int8, 8-bit)",
        "tiny-nf4": "tiny-nf4-native (bitsandbytes nf4, 4-bit, group 64)",
        "tiny-torchao": "tiny-torchao-native (torchao Int8WeightOnlyConfig, 8-bit)",
    }
    ran = {r.model for r in evaluation.report.runs}
    for name, cell in cells.items():
        if name in ran:
            assert any(line.startswith(f"| {cell} |") for line in lines), evaluation.markdown


def _run_worker(
    tmp_path: Path, models: list[dict[str, Any]], run_id: str
) -> tuple[int, dict[str, Any], str]:
    """The worker, as a process, on one run of the manifest; its exit code, termination message
    and stderr."""
    parsed = parse_manifest(tiny_manifest("refused", models))
    run = next(r for r in expand(parsed.spec) if r.id == run_id)
    spec = build_run_spec(parsed, run, str(tmp_path / "out")).to_json()
    termination = tmp_path / "termination-log"
    process = subprocess.run(
        [sys.executable, "-m", "quanteval_worker.main"],
        env=os.environ
        | {"QUANTEVAL_RUN_SPEC": spec, "QUANTEVAL_TERMINATION_LOG": str(termination)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in process.stderr, process.stderr[-3000:]
    assert "model loaded" not in process.stderr  # refused before the weights load
    assert not (tmp_path / "out" / "runs" / run_id / "result.json").exists()
    return process.returncode, json.loads(termination.read_text()), process.stderr


def test_native_on_a_checkpoint_without_quantization_config_exits_4(
    plain_dir: Path, tmp_path: Path
) -> None:
    models = [{"name": "tiny", "source": str(plain_dir)}, native_entry("tiny-q", plain_dir)]
    code, message, _ = _run_worker(tmp_path, models, "tiny-q-native")
    assert code == ExitCode.CANNOT_LOAD
    assert message["state"] == "Failed" and message["reason"] == "CannotLoad"
    assert "quantization_config" in message["message"]
    assert str(plain_dir) in message["message"]


def test_a_quantizing_precision_on_a_quantized_checkpoint_exits_4(
    quantized_dirs: dict[str, Path], tmp_path: Path
) -> None:
    _require("bitsandbytes")
    source = quantized_dirs["tiny-nf4"]
    models = [{"name": "q", "source": str(source), "precisions": ["fp32", "int8"]}]
    code, message, _ = _run_worker(tmp_path, models, "q-int8")
    assert code == ExitCode.CANNOT_LOAD
    assert message["state"] == "Failed" and message["reason"] == "CannotLoad"
    text = message["message"]
    assert f"{source} is already quantized (bitsandbytes nf4, 4-bit, group 64)" in text
    assert "precision int8 would quantize it again" in text
    assert "use precision native" in text
