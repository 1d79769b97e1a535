"""What `quanteval plan` reads from a model's files without loading its weights: its parameter
count, and how a pre-quantized checkpoint was quantized."""

from pathlib import Path

from quanteval.api.errors import QuantEvalError
from quanteval.api.result import CheckpointQuantization
from quanteval.checkpoints import read_checkpoint_quantization
from quanteval_worker.gguf_files import gguf_quantization
from quanteval_worker.sources import package_location


def _local_location(source: str) -> Path | None:
    try:
        if source.startswith("package:"):
            return package_location(source.removeprefix("package:"))
    except QuantEvalError:
        return None
    return Path(source).expanduser()


def checkpoint_quantization(source: str) -> CheckpointQuantization | None:
    """From a GGUF file's type or a checkpoint's quantization_config; None for hub ids and
    checkpoints without one."""
    location = _local_location(source)
    if location is None:
        return None
    if location.suffix == ".gguf" and location.is_file():
        return gguf_quantization(location)
    return read_checkpoint_quantization(location) if location.is_dir() else None


def count_parameters(source: str) -> int | None:
    """Counted from a GGUF file's tensor table or a checkpoint's config; None for hub ids."""
    location = _local_location(source)
    if location is None:
        return None
    if location.suffix == ".gguf" and location.is_file():
        from gguf import GGUFReader

        return sum(int(t.n_elements) for t in GGUFReader(str(location)).tensors)
    if (location / "config.json").is_file():
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(str(location))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return int(sum(p.numel() for p in model.parameters()))
    return None
