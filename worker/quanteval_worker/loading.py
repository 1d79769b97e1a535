"""Loading a causal LM at a precision, and counting the bytes its weights really hold."""

import os
from pathlib import Path
from typing import Any

import torch

from quanteval.api.errors import CannotLoadError, OutOfMemoryError, first_line
from quanteval.sizing import GPU_WEIGHTS_SHARE
from quanteval_worker.device import DeviceInfo
from quanteval_worker.precisions import PrecisionStrategy
from quanteval_worker.sources import ResolvedSource


def gpu_memory_caps(gpu_memory_gib: float | None) -> dict[int | str, str] | None:
    """A per-GPU cap for accelerate, leaving headroom for activations and the KV cache.

    The same share `quanteval plan` and `gpus: auto` size with, so a run gets the GPUs it fits.
    """
    if not torch.cuda.is_available():
        return None
    caps: dict[int | str, str] = {}
    for index in range(torch.cuda.device_count()):
        total_gib = torch.cuda.get_device_properties(index).total_memory / 2**30
        cap = min(total_gib, gpu_memory_gib) if gpu_memory_gib else total_gib
        caps[index] = f"{cap * GPU_WEIGHTS_SHARE:.1f}GiB"
    return caps


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA or host allocation failure, as torch, accelerate and bitsandbytes raise them."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _does_not_fit(error: BaseException) -> bool:
    """accelerate's refusal to place a quantized model that does not fit the GPUs it was given."""
    text = str(error)
    return isinstance(error, ValueError) and "dispatched on the CPU or the disk" in text


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
    return CannotLoadError(f"{source.location}: cannot load: {first_line(error)}")


# Files a transformers checkpoint never needs: consolidated originals, other frameworks' weights.
_NOT_NEEDED = ["original/*", "*.pth", "*.pt", "*.gguf", "*.onnx", "*.msgpack", "*.h5", "*.ot"]


def fetch_source(source: ResolvedSource) -> ResolvedSource:
    """A hub model downloaded (or found in the cache) now, so that load time is load time.

    safetensors weights when the repository has them; its .bin files only when it has none.
    """
    if not source.is_hub:
        return source
    from huggingface_hub import snapshot_download

    kwargs = _hub_kwargs(source)
    try:
        folder = snapshot_download(
            source.location, ignore_patterns=[*_NOT_NEEDED, "*.bin"], **kwargs
        )
        if not any(Path(folder).glob("*.safetensors")):
            folder = snapshot_download(source.location, ignore_patterns=_NOT_NEEDED, **kwargs)
    except Exception as error:
        raise _load_error(source, error) from error
    return ResolvedSource(location=folder, revision=None, is_hub=False)


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


def load_generation_config(source: ResolvedSource) -> Any:
    """The checkpoint's generation_config.json (its end-of-turn tokens), or None without one:
    what transformers would attach to the model, for an engine that is not transformers."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(source.location, **_hub_kwargs(source))
    except OSError:
        return None


def load_causal_lm(
    source: ResolvedSource,
    strategy: PrecisionStrategy,
    device: DeviceInfo,
    max_memory: dict[int | str, str] | None = None,
) -> Any:
    """The model at the strategy's precision; out of memory is OutOfMemoryError (exit 5)."""
    from transformers import AutoModelForCausalLM

    kwargs = strategy.load_kwargs(device, max_memory) | _hub_kwargs(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(source.location, **kwargs)
    except Exception as error:
        if is_out_of_memory(error) or _does_not_fit(error):
            raise OutOfMemoryError(
                f"out of memory loading {source.location} at {strategy.precision} on "
                f"{device.describe()}: {first_line(error)[:300]}; use a lower "
                "precision or more GPUs (spec.resources.gpus)"
            ) from error
        raise _load_error(source, error) from error
    model.eval()
    _decompress_now(model)
    return model


DECOMPRESSED = "decompressedOnLoad"


def _decompress_now(model: Any) -> None:
    """A compressed-tensors checkpoint that transformers would decompress to dense weights on
    its first forward (the CPU path) is decompressed here, so the weights and peaks measured are
    those of the model that runs, not of the packed one that never computes."""
    quantizer = getattr(model, "hf_quantizer", None)
    compressor = getattr(quantizer, "compressor", None)
    if compressor is not None and hasattr(model, "ct_decompress_hook"):
        compressor.decompress_model(model)  # which removes the hook
        setattr(model, DECOMPRESSED, True)


def quantization_settings(model: torch.nn.Module) -> dict[str, Any]:
    """The quantization method's settings as loaded (threshold, quant type, compute dtype)."""
    config = getattr(getattr(model, "config", None), "quantization_config", None)
    if config is None:
        return {}
    settings = config if isinstance(config, dict) else config.to_dict()
    return {
        k: v if isinstance(v, str | int | float | bool | None) else str(v)
        for k, v in settings.items()
    } | ({DECOMPRESSED: True} if getattr(model, DECOMPRESSED, False) else {})


def release_device_memory(device: DeviceInfo) -> None:
    """Hand a freed model's CUDA blocks back, so what runs next is not measured against them."""
    if device.kind == "cuda":
        torch.cuda.empty_cache()
