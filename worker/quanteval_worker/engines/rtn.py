"""Round-to-nearest (RTN) quantization of a plain Hugging Face checkpoint into the
compressed-tensors format that vLLM serves.

vLLM runs int8 W8A8 and int4 W4A16 checkpoints with its own kernels (compressed-tensors is the
format it reads them in). QuantEval makes such checkpoints itself, from the unquantized folder it
already evaluates, so that a team can see what int8 W8A8 or int4 W4A16 costs, in quality and in
speed, on the engine they serve with, without first finding a published quantized copy of the
model.

The quantization is RTN: each weight is rounded to the nearest level of a symmetric grid whose
scale comes from the weight's own absolute maximum (per output channel, or per group of 32). There
is no calibration data, so the quality measured is a lower bound of what calibrated methods (GPTQ,
AWQ) would give in the same format. Everything is done with compressed-tensors' own API (its
schemes, `apply_quantization_config`, `calculate_qparams`, `ModelCompressor`), so the checkpoint
written is the one that library, and vLLM, expect; lm_head and the embeddings stay unquantized.

torch, transformers and compressed-tensors are imported inside `quantize_rtn`: this module imports
without them.
"""

import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MADE_BY = "QuantEval"
LIBRARY = "compressed-tensors"


@dataclass(frozen=True)
class _Recipe:
    """One precision: the compressed-tensors preset it starts from, and what it writes."""

    preset: str  # a compressed-tensors PRESET_SCHEMES name
    weight_bits: int
    group_size: int | None  # None: one scale per output channel
    activation_bits: int | None  # None: activations stay bf16
    format: str  # the compressed-tensors CompressionFormat written


_RECIPES: dict[str, _Recipe] = {
    # int8 weights, symmetric, per output channel; int8 activations, dynamic per token.
    "w8a8-int8": _Recipe("W8A8", 8, None, 8, "int-quantized"),
    # int4 weights, symmetric, groups of 32 along the input; bf16 activations.
    "w4a16-g32": _Recipe("W4A16", 4, 32, None, "pack-quantized"),
}

PRECISIONS = tuple(_RECIPES)


@dataclass(frozen=True)
class RtnCheckpoint:
    """A compressed-tensors checkpoint written by `quantize_rtn`."""

    location: Path
    scheme: str  # the compressed-tensors preset: "W8A8", "W4A16"
    weight_bits: int
    group_size: int | None
    activation_bits: int | None
    seconds: float  # wall time of quantizing and writing; 0.0 when it was already there

    def describe(self) -> dict[str, object]:
        """A JSON-able record of how the checkpoint was made."""
        try:
            version: str | None = importlib.metadata.version(LIBRARY)
        except importlib.metadata.PackageNotFoundError:
            version = None
        return {
            "madeBy": MADE_BY,
            "method": "RTN",
            "calibration": "none",
            "library": LIBRARY,
            "libraryVersion": version,
            "format": _format_of(self),
            "scheme": self.scheme,
            "weightBits": self.weight_bits,
            "groupSize": self.group_size,
            "activationBits": self.activation_bits,
            "ignored": ["lm_head", "embeddings"],
            "location": str(self.location),
            "seconds": round(self.seconds, 3),
        }


def _format_of(checkpoint: RtnCheckpoint) -> str | None:
    """The format the checkpoint's config.json records, else the one its scheme writes."""
    try:
        config = json.loads((checkpoint.location / "config.json").read_text())
        written = config["quantization_config"]["format"]
        if isinstance(written, str):
            return written
    except (OSError, ValueError, KeyError, TypeError):
        pass
    recipe = next((r for r in _RECIPES.values() if r.preset == checkpoint.scheme), None)
    return recipe.format if recipe is not None else None


def _recipe(precision: str) -> _Recipe:
    try:
        return _RECIPES[precision]
    except KeyError:
        raise ValueError(
            f"unknown RTN precision {precision!r}; known: {', '.join(PRECISIONS)}"
        ) from None


def quantize_rtn(source: Path, target: Path, precision: str) -> RtnCheckpoint:
    """Quantize the Hugging Face checkpoint folder `source` by RTN at `precision` into a
    compressed-tensors checkpoint folder `target` (with the tokenizer), and say what it is.

    The folder is written beside `target` and renamed into place at the end; if `target` is
    already a folder it is taken as made before and returned as is.
    """
    recipe = _recipe(precision)
    target = Path(target)

    def checkpoint(seconds: float) -> RtnCheckpoint:
        return RtnCheckpoint(
            location=target,
            scheme=recipe.preset,
            weight_bits=recipe.weight_bits,
            group_size=recipe.group_size,
            activation_bits=recipe.activation_bits,
            seconds=seconds,
        )

    if target.is_dir():
        return checkpoint(0.0)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        seconds = _write(Path(source), staging, recipe)
        staging.chmod(0o755)  # mkdtemp makes it private; the published folder is not
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
            # Another writer published it first: theirs stands.
            shutil.rmtree(staging, ignore_errors=True)
            return checkpoint(0.0)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return checkpoint(seconds)


def _write(source: Path, folder: Path, recipe: _Recipe) -> float:
    """Load `source` in bf16 on CPU, quantize its Linear layers (lm_head excepted) by RTN, and
    save the compressed model, its compressed-tensors config and the tokenizer into `folder`.

    Returns the seconds that took (loading included, importing the libraries not)."""
    import torch
    from compressed_tensors.compressors import (  # type: ignore[import-untyped]
        ModelCompressor,
    )
    from compressed_tensors.offload import (  # type: ignore[import-untyped]
        update_offload_parameter,
    )
    from compressed_tensors.quantization import (  # type: ignore[import-untyped]
        QuantizationConfig,
        QuantizationStatus,
        QuantizationStrategy,
        apply_quantization_config,
        preset_name_to_scheme,
    )
    from compressed_tensors.quantization.utils import (  # type: ignore[import-untyped]
        calculate_qparams,
        is_module_quantized,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    # On CPU (no device_map: that needs accelerate, which this environment need not have).
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    model.eval()

    scheme = preset_name_to_scheme(recipe.preset, targets=["Linear"])
    if recipe.group_size is not None:
        scheme.weights = scheme.weights.model_copy(update={"group_size": recipe.group_size})
    # Embeddings are not Linear, so only lm_head needs naming (tied or not).
    config = QuantizationConfig(config_groups={"group_0": scheme}, ignore=["lm_head"])
    apply_quantization_config(model, config)

    with torch.no_grad():
        for name, module in model.named_modules():
            if not is_module_quantized(module) or module.quantization_scheme.weights is None:
                continue
            args = module.quantization_scheme.weights
            weight = module.weight.detach().to(torch.float32)
            if args.strategy == QuantizationStrategy.CHANNEL:
                observed = weight  # [out, in]: one scale per output row
                keep = True
            elif args.strategy == QuantizationStrategy.GROUP:
                columns = weight.shape[-1]
                if columns % args.group_size != 0:
                    raise ValueError(
                        f"{name}: {columns} input features are not a multiple of the group "
                        f"size {args.group_size}"
                    )
                observed = weight.unflatten(-1, (columns // args.group_size, args.group_size))
                keep = False  # [out, groups]
            else:
                raise ValueError(f"{name}: RTN does not handle the {args.strategy} strategy")
            scale, zero_point = calculate_qparams(
                observed.amin(dim=-1, keepdim=keep), observed.amax(dim=-1, keepdim=keep), args
            )
            update_offload_parameter(module, "weight_scale", scale.to(module.weight_scale.dtype))
            if hasattr(module, "weight_zero_point"):
                update_offload_parameter(
                    module, "weight_zero_point", zero_point.to(module.weight_zero_point.dtype)
                )
            module.quantization_status = QuantizationStatus.FROZEN

    compressor = ModelCompressor.from_pretrained_model(model, quantization_format=recipe.format)
    compressor.compress_model(model)
    model.save_pretrained(folder)
    compressor.update_config(str(folder))
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return time.perf_counter() - started
