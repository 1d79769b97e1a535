"""The engines that run a run's model, one module each behind one interface (base.Engine).

The engine is chosen once, in prepare, from the run spec's engine: `auto` is llama.cpp for a GGUF
file at `native` (the file as shipped, at its own quantization) and transformers for everything
else; a named engine is that engine, or a refusal naming why it cannot take this source. Only an
engine's own module imports its package (the import-linter checks it).
"""

import hashlib
import importlib.util
from pathlib import Path

from quanteval.api.errors import CannotLoadError, InvalidSpecError
from quanteval.api.result import CheckpointQuantization
from quanteval.api.spec import VllmSpec
from quanteval.engines import QUANTEVAL_RTN
from quanteval.engines import Engine as EngineName
from quanteval.precisions import Precision
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines.base import LLAMA_CPP, TRANSFORMERS, VLLM, Engine
from quanteval_worker.loading import load_generation_config
from quanteval_worker.precisions import PrecisionStrategy
from quanteval_worker.sources import ResolvedSource, cache_dir

__all__ = ["LLAMA_CPP", "TRANSFORMERS", "VLLM", "Engine", "choose_engine", "load_engine"]

# The package each engine needs, and where it is installed.
_PACKAGES = {
    LLAMA_CPP: ("llama_cpp", "the worker extra: pip install 'quanteval[worker]'"),
    VLLM: ("vllm", "bash scripts/setup-vllm-venv.sh (.venv-vllm); quanteval run --local starts "
           "vllm runs with that environment's Python"),
}  # fmt: skip
# quant_method values of the checkpoints vLLM runs at precision native.
VLLM_NATIVE_METHODS = frozenset({"compressed-tensors", "gptq", "awq", "fp8"})


def choose_engine(
    precision: Precision, source: ResolvedSource, engine: EngineName = EngineName.AUTO
) -> str:
    """The engine that runs the run: auto's choice, or the named engine where it can take this
    source (the precision x engine table is prepare's first check). Raises InvalidSpecError
    naming the pair and what to use instead."""
    gguf_native = precision == Precision.NATIVE and source.gguf is not None
    if engine == EngineName.AUTO:
        return LLAMA_CPP if gguf_native else TRANSFORMERS
    if engine == EngineName.LLAMA_CPP and source.gguf is None:
        raise InvalidSpecError(
            f"native on llama.cpp: {source.location} is not a GGUF file; llama.cpp runs GGUF "
            "files only: use engine auto, transformers or vllm for this checkpoint"
        )
    if gguf_native and engine != EngineName.LLAMA_CPP:
        raise InvalidSpecError(
            f"native on {engine}: a GGUF file as shipped is llama.cpp's to run; use engine "
            "llama.cpp (or auto), or a precision such as bf16 for its dequantized weights"
        )
    return engine.value


def check_installed(name: str) -> None:
    """CannotLoadError (exit 4) naming the engine when its package is not in this environment."""
    package, install = _PACKAGES.get(name, ("", ""))
    if package and importlib.util.find_spec(package) is None:
        raise CannotLoadError(
            f"engine {name}: {package} is not installed in this worker's environment; {install}"
        )


def check_vllm_checkpoint(checkpoint: CheckpointQuantization | None, source: str) -> None:
    """vLLM runs a checkpoint at native only in a format of its own."""
    if checkpoint is None:
        raise InvalidSpecError(
            f"native on vllm: {source} is not quantized (no quantization_config): precision "
            "native is a pre-quantized checkpoint; use bf16, w8a8-int8 or w4a16-g32"
        )
    if checkpoint.method not in VLLM_NATIVE_METHODS:
        raise CannotLoadError(
            f"native on vllm: {source} is quantized by {checkpoint.describe()}, which vLLM does "
            f"not run here (it runs {', '.join(sorted(VLLM_NATIVE_METHODS))}); run it on "
            "transformers (engine auto)"
        )


def rtn_checkpoint(source: ResolvedSource, precision: Precision) -> Path:
    """Where QuantEval's own RTN quantization of the source is kept (made once, then reused)."""
    key = hashlib.sha256(f"{Path(source.location).resolve()}|{precision}".encode()).hexdigest()
    return cache_dir() / "rtn" / f"{Path(source.location).name}-{precision}-{key[:12]}"


def load_engine(
    name: str,
    source: ResolvedSource,
    strategy: PrecisionStrategy,
    device: DeviceInfo,
    max_memory: dict[int | str, str] | None,
    checkpoint: CheckpointQuantization | None,
    vllm: VllmSpec | None = None,
    batch_size: int | None = None,
) -> Engine:
    """The model loaded by the engine `name` (choose_engine's answer)."""
    if name == LLAMA_CPP:
        from quanteval_worker.engines.llama_cpp import LlamaCppEngine

        assert source.gguf is not None  # choose_engine picks llama.cpp only for a GGUF
        return LlamaCppEngine.load(source.gguf, load_generation_config(source), checkpoint)
    if name == VLLM:
        from quanteval_worker.engines.vllm import VllmEngine

        location, made = source.location, None
        if strategy.precision in QUANTEVAL_RTN:
            from quanteval_worker.engines.rtn import quantize_rtn

            quantized = quantize_rtn(
                Path(source.location), rtn_checkpoint(source, strategy.precision),
                strategy.precision.value,
            )  # fmt: skip
            location, made = str(quantized.location), quantized.describe()
        return VllmEngine.load(
            location, strategy.precision, device, vllm or VllmSpec(), batch_size, made
        )
    from quanteval_worker.engines.transformers import TransformersEngine

    return TransformersEngine.load(source, strategy, device, max_memory)
