"""The weights a loaded transformers model really holds: bytes, and parameters per stored type.

A plain tensor holds its elements x their size. Where a precision family keeps its data elsewhere,
a hook says what it holds: torchao's tensor subclasses hold inner tensors (packed data, scales,
zero points) behind a logical shape and dtype; bitsandbytes keeps a quantization state (4-bit) or
row scales (int8) beside each parameter; HQQ keeps each layer's scales and zeros in its `meta`.
"""

from collections.abc import Callable
from typing import Any

import torch


def stored_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors that hold a tensor's data (torchao: the subclass's inner tensors)."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is None:
        return [tensor]
    names, _ = flatten(tensor)
    return [inner for name in names for inner in stored_tensors(getattr(tensor, name))]


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in stored_tensors(tensor))


def _quant_state_bytes(state: Any) -> int:
    total = 0
    for name in ("absmax", "code"):
        tensor = getattr(state, name, None)
        if isinstance(tensor, torch.Tensor):
            total += tensor.numel() * tensor.element_size()
    nested = getattr(state, "state2", None)
    if nested is not None:
        total += _quant_state_bytes(nested)
    return total


def _bitsandbytes_bytes(parameter: torch.Tensor) -> int:
    """A bitsandbytes parameter's 4-bit quantization state, or its int8 row scales."""
    total = 0
    quant_state = getattr(parameter, "quant_state", None)
    if quant_state is not None:
        total += _quant_state_bytes(quant_state)
    scb = getattr(parameter, "SCB", None)
    if isinstance(scb, torch.Tensor):
        total += scb.numel() * scb.element_size()
    return total


def _hqq_meta_bytes(model: torch.nn.Module) -> int:
    """HQQ keeps each layer's scales and zeros in a `meta` dict, outside parameters and buffers."""
    total = 0
    for module in model.modules():
        meta = getattr(module, "meta", None)
        if isinstance(meta, dict) and hasattr(module, "W_q"):
            total += sum(_tensor_bytes(v) for v in meta.values() if isinstance(v, torch.Tensor))
    return total


# What a family holds beside each parameter, and beside the parameters of the whole model.
PARAMETER_HOOKS: tuple[Callable[[torch.Tensor], int], ...] = (_bitsandbytes_bytes,)
MODEL_HOOKS: tuple[Callable[[torch.nn.Module], int], ...] = (_hqq_meta_bytes,)


def weights_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters, buffers and quantization state really held."""
    total = sum(hook(model) for hook in MODEL_HOOKS)
    for parameter in model.parameters():
        total += _tensor_bytes(parameter) + sum(hook(parameter) for hook in PARAMETER_HOOKS)
    for buffer in model.buffers():
        total += _tensor_bytes(buffer)
    return total


def _storage_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype the weights are stored in: that of the largest tensor holding them."""
    return max(stored_tensors(tensor), key=lambda t: t.numel()).dtype


def actual_dtypes(model: torch.nn.Module) -> dict[str, int]:
    """Parameter count per storage dtype: what the precision really produced."""
    counts: dict[str, int] = {}
    for parameter in model.parameters():
        name = str(_storage_dtype(parameter)).removeprefix("torch.")
        counts[name] = counts.get(name, 0) + parameter.numel()
    return counts


def touch_weights(model: torch.nn.Module) -> None:
    """Read every CPU parameter and buffer once, so weights mapped from the checkpoint file are
    resident before a phase measures its own growth (their pages are what the model needs)."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            for stored in stored_tensors(tensor.detach()):
                if stored.device.type == "cpu" and stored.numel():
                    stored.reshape(-1).view(torch.uint8).max()  # any dtype, float8 too
