"""GPU sizing from a parameter count: weights bytes per precision, and the GPUs they need."""

import math

from quanteval.api.result import CheckpointQuantization
from quanteval.api.spec import VllmSpec
from quanteval.engines import Engine
from quanteval.precisions import BYTES_PER_PARAMETER, Precision

DEFAULT_GPU_MEMORY_GIB = 80.0
# The share of each GPU the worker lets accelerate fill with weights (the rest: activations, KV).
GPU_WEIGHTS_SHARE = 0.85
# Weights are not all a model holds on the GPU at load: embeddings kept in higher precision,
# buffers, the CUDA context. Measured overheads sit well under this margin.
LOAD_OVERHEAD = 1.15


def estimate_weights_bytes(
    parameters: float, precision: Precision, checkpoint: CheckpointQuantization | None = None
) -> int | None:
    """The weights' bytes at `precision`; a native checkpoint's from its own quantization
    (None where it is unknown)."""
    per_parameter = BYTES_PER_PARAMETER.get(precision)
    if precision == Precision.NATIVE:
        per_parameter = checkpoint.bytes_per_parameter if checkpoint else None
    return None if per_parameter is None else int(parameters * per_parameter)


def gpus_needed(weights_bytes: int, gpu_memory_gib: float = DEFAULT_GPU_MEMORY_GIB) -> int:
    usable = gpu_memory_gib * GPU_WEIGHTS_SHARE * 2**30
    return max(1, math.ceil(weights_bytes * LOAD_OVERHEAD / usable))


def vllm_gpus_needed(
    weights_bytes: int, kv_cache_bytes: int, gpu_memory_gib: float, utilization: float
) -> int:
    """GPUs for a vLLM run: vLLM takes `utilization` of each GPU up front and fills what its
    weights leave with KV cache, so the weights and the stated KV budget must fit in that share
    (tensor parallelism splits both across the GPUs)."""
    usable = gpu_memory_gib * utilization * 2**30
    return max(1, math.ceil((weights_bytes * LOAD_OVERHEAD + kv_cache_bytes) / usable))


def run_gpus(weights_bytes: int, engine: Engine, gpu_memory_gib: float, vllm: VllmSpec) -> int:
    """The GPUs `gpus: auto` gives a run: its weights; on vllm, with the KV budget in the share
    of each GPU vLLM takes (its tensor-parallel size is then this number)."""
    if engine == Engine.VLLM:
        kv = vllm.kv_cache_gib * 2**30
        return vllm_gpus_needed(weights_bytes, kv, gpu_memory_gib, vllm.gpu_memory_utilization)
    return gpus_needed(weights_bytes, gpu_memory_gib)
