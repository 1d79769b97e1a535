"""The CUDA paths: bitsandbytes int8 and nf4 on a GPU, with allocator peaks. Skipped without one."""

from pathlib import Path

import pytest
import torch

from quanteval.precisions import Precision
from quanteval_worker.device import detect_device
from quanteval_worker.loading import load_causal_lm, weights_bytes
from quanteval_worker.memory import MemoryMeter
from quanteval_worker.precisions import STRATEGIES
from quanteval_worker.sources import ResolvedSource

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)"),
]


@pytest.mark.parametrize("precision", [Precision.FP16, Precision.INT8, Precision.NF4])
def test_quantized_models_load_on_the_gpu_with_measured_peaks(
    tiny_llama_dir: Path, precision: Precision
) -> None:
    meter = MemoryMeter("cuda")
    meter.begin()
    source = ResolvedSource(str(tiny_llama_dir), None, is_hub=False)
    model = load_causal_lm(source, STRATEGIES[precision], detect_device())
    peak = meter.end("load")
    assert next(model.parameters()).device.type == "cuda"
    assert peak >= weights_bytes(model) * 0.9
    assert meter.figures["loadMaxReservedBytes"] >= meter.figures["loadMaxAllocatedBytes"]
    # NVML, polled over the phase, sees the allocator's reservation and the CUDA context too.
    assert meter.figures["loadNvmlPeakUsedBytes"] >= meter.figures["loadMaxReservedBytes"]
