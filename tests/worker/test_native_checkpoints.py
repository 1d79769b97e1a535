"""Precision native on checkpoints quantized before we got them (bitsandbytes int8 and nf4,
torchao int8 weight-only, and compressed-tensors int4 weight-only made with that library alone),
all evaluated in one local run, each compared with the plain model it came from (baselineModel);
and the refusals: native on a plain checkpoint, a quantizing precision on a quantized one."""

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quanteval.api.errors import ExitCode
from quanteval.api.result import CheckpointQuantization
from quanteval.api.spec import parse_manifest
from quanteval.checkpoints import read_checkpoint_quantization
from quanteval.matrix import build_run_spec, expand

from .local_runs import (
    SAMPLES,
    SHAPE,
    Evaluation,
    Outcome,
    Worker,
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
    # Whether the weights that compute are smaller than the plain model's: on a CPU transformers
    # decompresses compressed-tensors' packed int4 to dense weights before the first forward.
    saves_weights: bool = True

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
    Quantized(
        "tiny-ct",
        "compressed_tensors",
        CheckpointQuantization(
            method="compressed-tensors", bits=4, group_size=32, kind="int group"
        ),
        saves_weights=False,
    ),
)
CT = CHECKPOINTS[-1]
CT_FORMAT = "pack-quantized"


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


def _module(name: str) -> Any:
    """A compressed-tensors module, untyped (the package ships no py.typed)."""
    return importlib.import_module(name)


def _fill_weight_qparams(model: Any) -> int:
    """Each quantized module's weight_scale (and zero point, where it has one) from its own
    weights' min and max a group: weight-only quantization needs no calibration data. The number
    of modules filled."""
    import torch

    helpers = _module("compressed_tensors.quantization.utils")
    filled = 0
    with torch.no_grad():
        for module in model.modules():
            if not helpers.is_module_quantized(module):
                continue
            args = module.quantization_scheme.weights
            scale, zero_point = helpers.compute_dynamic_scales_and_zp(module.weight, args, module)
            module.weight_scale.copy_(scale)
            if getattr(module, "weight_zero_point", None) is not None:
                module.weight_zero_point.copy_(zero_point)
            filled += 1
    return filled


def _save_compressed_tensors(plain: Path, directory: Path) -> Path:
    """Quantize the plain checkpoint on the CPU with compressed-tensors and save it compressed,
    its quantization_config in config.json, with the plain one's tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantization = _module("compressed_tensors.quantization")
    compressors = _module("compressed_tensors.compressors")
    model = AutoModelForCausalLM.from_pretrained(plain, dtype=torch.float32, device_map={"": "cpu"})
    weights = quantization.QuantizationArgs(
        num_bits=4, type="int", symmetric=True, strategy="group", group_size=32
    )
    config = quantization.QuantizationConfig(
        config_groups={
            "group_0": quantization.QuantizationScheme(targets=["Linear"], weights=weights)
        },
        ignore=["lm_head"],
    )
    quantization.apply_quantization_config(model, config)
    assert _fill_weight_qparams(model) == 7 * SHAPE["num_hidden_layers"]  # q k v o gate up down
    compressor = compressors.ModelCompressor.from_pretrained_model(model, CT_FORMAT)
    compressor.compress_model(model)
    model.save_pretrained(directory)
    compressor.update_config(str(directory))
    AutoTokenizer.from_pretrained(plain).save_pretrained(directory)
    return directory


def _save_quantized(plain: Path, name: str, directory: Path) -> Path:
    """Quantize the plain checkpoint on the CPU and save it as a pre-quantized checkpoint, with
    the plain one's tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == CT.name:
        return _save_compressed_tensors(plain, directory)

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
    assert against.weights_saving_pct is not None
    assert (against.weights_saving_pct > 0) is checkpoint.saves_weights
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
    assert row["weightsSavingPct"] is not None
    assert (row["weightsSavingPct"] > 0) is checkpoint.saves_weights
    assert row["verdict"].startswith("cannot decide") and row["meanKl"] is not None
    assert evaluation.rows["tiny-fp32"]["isBaseline"] is True


def test_the_markdown_names_each_checkpoints_quantization(evaluation: Evaluation) -> None:
    lines = evaluation.markdown.splitlines()
    assert any(line.startswith("| tiny-fp32 (baseline) |") for line in lines)
    cells = {
        "tiny-int8": "tiny-int8-native (bitsandbytes LLM.int8, 8-bit)",
        "tiny-nf4": "tiny-nf4-native (bitsandbytes nf4, 4-bit, group 64)",
        "tiny-torchao": "tiny-torchao-native (torchao Int8WeightOnlyConfig, 8-bit)",
        "tiny-ct": "tiny-ct-native (compressed-tensors int group, 4-bit, group 32)",
    }
    ran = {r.model for r in evaluation.report.runs}
    for name, cell in cells.items():
        if name in ran:
            assert any(line.startswith(f"| {cell} |") for line in lines), evaluation.markdown


def test_the_compressed_tensors_checkpoint_is_packed_int4(quantized_dirs: dict[str, Path]) -> None:
    _require(CT.package)
    ct_dir = quantized_dirs[CT.name]
    assert read_checkpoint_quantization(ct_dir) == CT.expected
    config = json.loads((ct_dir / "config.json").read_text())["quantization_config"]
    assert (config["format"], config["quantization_status"]) == (CT_FORMAT, "compressed")
    assert config["ignore"] == ["lm_head"]
    # Packed on disk: int32 words of eight 4-bit weights, a scale a group, no fp32 weight.
    from safetensors import safe_open

    with safe_open(str(ct_dir / "model.safetensors"), "pt") as stored:
        names = set(stored.keys())
        packed = stored.get_tensor("model.layers.0.mlp.down_proj.weight_packed")
        scale = stored.get_tensor("model.layers.0.mlp.down_proj.weight_scale")
    assert "model.layers.0.mlp.down_proj.weight" not in names
    assert "lm_head.weight" in names and "lm_head.weight_packed" not in names
    hidden, intermediate = SHAPE["hidden_size"], SHAPE["intermediate_size"]
    assert str(packed.dtype) == "torch.int32"
    assert tuple(packed.shape) == (hidden, intermediate * 4 // 32)
    assert tuple(scale.shape) == (hidden, intermediate // 32)


def test_transformers_loads_compressed_tensors_on_the_cpu_close_to_the_plain_model(
    plain_dir: Path, quantized_dirs: dict[str, Path]
) -> None:
    """As the worker loads it (no quantization_config of ours): compressed at load, decompressed
    by compressed-tensors on the first forward."""
    _require(CT.package)
    ct_dir = quantized_dirs[CT.name]
    import torch
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(plain_dir, device_map={"": "cpu"})
    loaded = AutoModelForCausalLM.from_pretrained(ct_dir, dtype="auto", device_map={"": "cpu"})
    projection = loaded.model.layers[0].self_attn.q_proj
    assert projection.weight_packed.dtype == torch.int32 and not hasattr(projection, "weight")
    ids = torch.tensor([[1, 5, 9, 20, 33, 7, 101, 250]])
    with torch.no_grad():
        expected, got = plain(ids).logits, loaded(ids).logits
    assert projection.weight.dtype == torch.float32  # decompressed by the forward
    assert got.shape == expected.shape
    difference = (got - expected).abs().max().item()
    assert 0 < difference < 0.25 * expected.abs().max().item()  # quantized, and close
    kl = torch.nn.functional.kl_div(
        got.log_softmax(-1), expected.log_softmax(-1), log_target=True, reduction="batchmean"
    )
    assert kl.item() < 0.01
    assert bool((got.argmax(-1) == expected.argmax(-1)).all())


def test_a_compressed_tensors_run_measures_the_weights_that_compute(
    evaluation: Evaluation,
) -> None:
    """On a CPU transformers decompresses the packed int4 weights to dense ones before the first
    forward: the weights measured are those that compute (the fp32 ones and the kept scales),
    not the packed ones, and the result says so."""
    _require(CT.package)
    result = evaluation.result(CT.run_id)
    assert result.environment["quantization"]["decompressedOnLoad"] is True
    native_bytes = evaluation.rows[CT.run_id]["weightsBytes"]
    plain_bytes = evaluation.rows["tiny-fp32"]["weightsBytes"]
    assert isinstance(native_bytes, int) and isinstance(plain_bytes, int)
    assert native_bytes >= plain_bytes


def _run_worker(
    worker: Worker, tmp_path: Path, models: list[dict[str, Any]], run_id: str
) -> Outcome:
    """The worker on one run of the manifest, refused before the weights load."""
    parsed = parse_manifest(tiny_manifest("refused", models))
    run = next(r for r in expand(parsed.spec) if r.id == run_id)
    spec = build_run_spec(parsed, run, str(tmp_path / "out")).to_json()
    outcome = worker({"QUANTEVAL_RUN_SPEC": spec})
    assert "model loaded" not in outcome[2]
    assert not (tmp_path / "out" / "runs" / run_id / "result.json").exists()
    return outcome


def test_native_on_a_checkpoint_without_quantization_config_exits_4(
    plain_dir: Path, tmp_path: Path, worker: Worker
) -> None:
    models = [{"name": "tiny", "source": str(plain_dir)}, native_entry("tiny-q", plain_dir)]
    code, message, _ = _run_worker(worker, tmp_path, models, "tiny-q-native")
    assert code == ExitCode.CANNOT_LOAD
    assert message["state"] == "Failed" and message["reason"] == "CannotLoad"
    assert "quantization_config" in message["message"]
    assert str(plain_dir) in message["message"]


def test_a_quantizing_precision_on_a_quantized_checkpoint_exits_4(
    quantized_dirs: dict[str, Path], tmp_path: Path, worker: Worker
) -> None:
    _require("bitsandbytes")
    source = quantized_dirs["tiny-nf4"]
    models = [{"name": "q", "source": str(source), "precisions": ["fp32", "int8"]}]
    code, message, _ = _run_worker(worker, tmp_path, models, "q-int8")
    assert code == ExitCode.CANNOT_LOAD
    assert message["state"] == "Failed" and message["reason"] == "CannotLoad"
    text = message["message"]
    assert f"{source} is already quantized (bitsandbytes nf4, 4-bit, group 64)" in text
    assert "precision int8 would quantize it again" in text
    assert "use precision native" in text
