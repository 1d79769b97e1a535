"""Loading a causal LM at a precision, and counting the bytes its weights really hold."""

import os
from typing import Any

import torch

from quanteval.exitcodes import CannotLoadError
from quanteval_worker.precision_strategies import PrecisionStrategy
from quanteval_worker.sources import ResolvedSource


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_memory_caps(gpu_memory_gib: float | None) -> dict[int | str, str] | None:
    """A per-GPU cap for accelerate, leaving headroom for activations and the KV cache."""
    if not torch.cuda.is_available():
        return None
    caps: dict[int | str, str] = {}
    for index in range(torch.cuda.device_count()):
        total_gib = torch.cuda.get_device_properties(index).total_memory / 2**30
        cap = min(total_gib, gpu_memory_gib) if gpu_memory_gib else total_gib
        caps[index] = f"{cap * 0.85:.1f}GiB"
    return caps


def _hub_kwargs(source: ResolvedSource) -> dict[str, Any]:
    if not source.is_hub:
        return {}
    kwargs: dict[str, Any] = {"revision": source.revision or "main"}
    token = os.environ.get("HF_TOKEN")
    if token:
        kwargs["token"] = token
    return kwargs


def _load_error(source: ResolvedSource, error: Exception) -> CannotLoadError:
    """A short reason for a failed load; hub auth errors (401/403) included, tokens never shown."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    name = type(error).__name__
    if status in (401, 403) or name == "GatedRepoError":
        return CannotLoadError(
            f"{source.location}: access denied by the hub (HTTP {status or 403}); check the token "
            "Secret (spec.huggingFace.tokenSecretRef) and that the account accepted the licence"
        )
    if name == "RepositoryNotFoundError":
        return CannotLoadError(f"{source.location}: no such model on the hub (or it is private)")
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else name
    return CannotLoadError(f"{source.location}: cannot load: {first_line}")


def load_tokenizer(source: ResolvedSource) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, **_hub_kwargs(source))
    except Exception as error:
        raise _load_error(source, error) from error
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    source: ResolvedSource,
    strategy: PrecisionStrategy,
    device: str,
    max_memory: dict[int | str, str] | None = None,
) -> Any:
    from transformers import AutoModelForCausalLM

    strategy.check(device)
    kwargs = strategy.load_kwargs(device, max_memory) | _hub_kwargs(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(source.location, **kwargs)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as error:
        raise _load_error(source, error) from error
    model.eval()
    return model


def weights_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters, buffers and bitsandbytes quantization state really held."""
    total = 0
    for parameter in model.parameters():
        total += parameter.numel() * parameter.element_size()
        quant_state = getattr(parameter, "quant_state", None)  # bitsandbytes 4-bit
        if quant_state is not None:
            total += _quant_state_bytes(quant_state)
        scb = getattr(parameter, "SCB", None)  # bitsandbytes int8 row scales
        if isinstance(scb, torch.Tensor):
            total += scb.numel() * scb.element_size()
    for buffer in model.buffers():
        total += buffer.numel() * buffer.element_size()
    return total


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


def actual_dtypes(model: torch.nn.Module) -> dict[str, int]:
    """Parameter count per storage dtype: what the precision really produced."""
    counts: dict[str, int] = {}
    for parameter in model.parameters():
        name = str(parameter.dtype).removeprefix("torch.")
        counts[name] = counts.get(name, 0) + parameter.numel()
    return counts
