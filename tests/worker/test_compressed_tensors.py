"""Precision native on a compressed-tensors checkpoint: a tiny Llama quantized on the CPU with the
compressed-tensors library alone (int4 weight-only, symmetric, groups of 32, packed into int32;
lm_head kept), loaded by transformers' compressed-tensors quantizer as it does by default, and
compared with the plain model it came from (baselineModel)."""

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from quanteval.api.result import CheckpointQuantization
from quanteval.checkpoints import read_checkpoint_quantization

from .local_runs import SAMPLES, SHAPE, Evaluation, native_entry, run_locally, tiny_manifest

pytest.importorskip("compressed_tensors")

BITS = 4
GROUP_SIZE = 32
FORMAT = "pack-quantized"
NAME = "tiny-ct"
RUN_ID = f"{NAME}-native"
EXPECTED = CheckpointQuantization(
    method="compressed-tensors", bits=BITS, group_size=GROUP_SIZE, kind="int group"
)


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
        num_bits=BITS, type="int", symmetric=True, strategy="group", group_size=GROUP_SIZE
    )
    config = quantization.QuantizationConfig(
        config_groups={
            "group_0": quantization.QuantizationScheme(targets=["Linear"], weights=weights)
        },
        ignore=["lm_head"],
    )
    quantization.apply_quantization_config(model, config)
    assert _fill_weight_qparams(model) == 7 * SHAPE["num_hidden_layers"]  # q k v o gate up down
    compressor = compressors.ModelCompressor.from_pretrained_model(model, FORMAT)
    compressor.compress_model(model)
    model.save_pretrained(directory)
    compressor.update_config(str(directory))
    AutoTokenizer.from_pretrained(plain).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def ct_dir(plain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_compressed_tensors(plain_dir, tmp_path_factory.mktemp(NAME))


@pytest.fixture(scope="module")
def evaluation(
    plain_dir: Path, ct_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Evaluation:
    """One `quanteval run --local`: the plain model at fp32, the compressed-tensors one at
    native."""
    models = [{"name": "tiny", "source": str(plain_dir)}, native_entry(NAME, ct_dir)]
    return run_locally(tiny_manifest("compressed-tensors", models), tmp_path_factory.mktemp("ct"))


def test_the_checkpoint_is_described_as_compressed_tensors(ct_dir: Path) -> None:
    assert read_checkpoint_quantization(ct_dir) == EXPECTED
    assert EXPECTED.describe() == "compressed-tensors int group, 4-bit, group 32"
    config = json.loads((ct_dir / "config.json").read_text())["quantization_config"]
    assert (config["format"], config["quantization_status"]) == (FORMAT, "compressed")
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
    assert tuple(packed.shape) == (hidden, intermediate * BITS // 32)
    assert tuple(scale.shape) == (hidden, intermediate // GROUP_SIZE)


def test_transformers_loads_it_on_the_cpu_close_to_the_plain_model(
    plain_dir: Path, ct_dir: Path
) -> None:
    """As the worker loads it (no quantization_config of ours): compressed at load, decompressed
    by compressed-tensors on the first forward."""
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


def test_a_native_run_records_the_checkpoint_and_its_baseline_model(
    evaluation: Evaluation,
) -> None:
    assert f"{RUN_ID}: Succeeded" in evaluation.stderr, evaluation.stderr[-2000:]
    result = evaluation.result(RUN_ID)
    assert (result.model, result.precision) == (NAME, "native")
    assert result.checkpoint_quantization == EXPECTED
    assert result.baseline_model == "tiny"
    assert result.metrics.samples == SAMPLES
    assert result.environment["quantization"]["quant_method"] == "compressed-tensors"
    plain = evaluation.result("tiny-fp32")
    assert plain.checkpoint_quantization is None and plain.baseline_model is None
    # On a CPU transformers decompresses the packed int4 weights to dense ones before the first
    # forward: the weights measured are those that compute (the fp32 ones and the kept scales),
    # not the packed ones, and the result says so.
    assert result.environment["quantization"]["decompressedOnLoad"] is True
    native_bytes = evaluation.rows[RUN_ID]["weightsBytes"]
    plain_bytes = evaluation.rows["tiny-fp32"]["weightsBytes"]
    assert isinstance(native_bytes, int) and isinstance(plain_bytes, int)
    assert native_bytes >= plain_bytes


def test_the_report_compares_the_native_run_with_the_baseline_models_run(
    evaluation: Evaluation,
) -> None:
    base = evaluation.run("tiny-fp32")
    assert base.is_baseline and base.checkpoint == ""
    run = evaluation.run(RUN_ID)
    assert run.state == "Succeeded" and not run.is_baseline
    assert run.checkpoint == EXPECTED.describe()
    against = run.vs_baseline
    assert against is not None and against.baseline_run_id == "tiny-fp32"
    assert against.matched_samples == SAMPLES
    assert against.weights_saving_pct is not None and against.weights_saving_pct <= 0
    assert against.paired is not None
    assert (against.paired.pairs, against.paired.unpaired) == (SAMPLES, 0)
    # The same tokenizer scored the same reference corpus: fidelity figures, not a reason.
    assert against.fidelity_unavailable is None
    assert against.fidelity is not None and against.fidelity.positions > 0
    assert against.fidelity.mean_kl >= 0
    row = evaluation.rows[RUN_ID]
    assert row["state"] == "Succeeded" and row["isBaseline"] is False
    assert row["weightsSavingPct"] is not None and row["weightsSavingPct"] <= 0
    assert row["meanKl"] is not None
    assert evaluation.rows["tiny-fp32"]["isBaseline"] is True
    cell = f"| {RUN_ID} (compressed-tensors int group, 4-bit, group 32) |"
    assert any(line.startswith(cell) for line in evaluation.markdown.splitlines())
