"""The engines that run a run's model, one module each behind one interface (base.Engine).

The engine is chosen once, in prepare, from the run spec: llama.cpp for a GGUF file at `native`
(the file as shipped, at its own quantization), transformers for everything else. Only an
engine's own module imports its package (the import-linter checks it).
"""

from quanteval.api.result import CheckpointQuantization
from quanteval.precisions import Precision
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines.base import LLAMA_CPP, TRANSFORMERS, Engine
from quanteval_worker.loading import load_generation_config
from quanteval_worker.precisions import PrecisionStrategy
from quanteval_worker.sources import ResolvedSource

__all__ = ["LLAMA_CPP", "TRANSFORMERS", "Engine", "choose_engine", "load_engine"]


def choose_engine(precision: Precision, source: ResolvedSource) -> str:
    """The engine a run's model needs: llama.cpp for a GGUF file as shipped, else transformers."""
    return LLAMA_CPP if precision == Precision.NATIVE and source.gguf is not None else TRANSFORMERS


def load_engine(
    name: str,
    source: ResolvedSource,
    strategy: PrecisionStrategy,
    device: DeviceInfo,
    max_memory: dict[int | str, str] | None,
    checkpoint: CheckpointQuantization | None,
) -> Engine:
    """The model loaded by the engine `name` (choose_engine's answer)."""
    if name == LLAMA_CPP:
        from quanteval_worker.engines.llama_cpp import LlamaCppEngine

        assert source.gguf is not None  # choose_engine picks llama.cpp only for a GGUF
        return LlamaCppEngine.load(source.gguf, load_generation_config(source), checkpoint)
    from quanteval_worker.engines.transformers import TransformersEngine

    return TransformersEngine.load(source, strategy, device, max_memory)
