"""A model's parameter count without loading its weights (for `quanteval plan`)."""

from pathlib import Path

from quanteval.api.errors import QuantEvalError
from quanteval_worker.sources import package_location


def count_parameters(source: str) -> int | None:
    """Counted from a GGUF file's tensor table or a checkpoint's config; None for hub ids."""
    try:
        location = (
            package_location(source.removeprefix("package:"))
            if source.startswith("package:")
            else Path(source).expanduser()
        )
    except QuantEvalError:
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
