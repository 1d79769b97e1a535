"""GPU sizing from a parameter count: weights bytes per precision, and the GPUs they need."""

import math

from quanteval.api.result import CheckpointQuantization
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
