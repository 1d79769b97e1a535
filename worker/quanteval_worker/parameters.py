"""What `quanteval plan` reads from a model's files without loading its weights: its parameter
count, and how a pre-quantized checkpoint was quantized."""

from pathlib import Path

from quanteval.api.errors import QuantEvalError
from quanteval.api.result import CheckpointQuantization
from quanteval_worker.gguf_files import parameters_by_type
from quanteval_worker.sources import package_location, quantization_at


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
    return None if location is None else quantization_at(location)


def count_parameters(source: str) -> int | None:
    """Counted from a GGUF file's tensor table or a checkpoint's config; None for hub ids."""
    location = _local_location(source)
    if location is None:
        return None
    if location.suffix == ".gguf" and location.is_file():
        return sum(parameters_by_type(location).values())
    if (location / "config.json").is_file():
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(str(location))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return int(sum(p.numel() for p in model.parameters()))
    return None
