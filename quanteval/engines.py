"""The engines a run can generate with, and which precisions each runs: one table, checked by
`quanteval validate`, the CRD and the worker's prepare alike. No torch here: the operator uses it.

`auto` is the behaviour from before engines were an axis: transformers, or llama.cpp for a GGUF
file at `native` (the worker decides, since only it knows what a source holds). Its runs keep
their ids and content hashes; a run on a named engine has `-<engine>` in its id and its engine
in its hash.
"""

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final, TypeVar

from quanteval.precisions import Precision

Run = TypeVar("Run")  # whatever a caller keeps a run as: an outcome, a record


class Engine(StrEnum):
    AUTO = "auto"
    TRANSFORMERS = "transformers"
    LLAMA_CPP = "llama.cpp"
    VLLM = "vllm"


# The engines a named engine's baseline run is compared with (the engine effect), first found.
DEFAULT_ENGINES: Final = (Engine.AUTO, Engine.TRANSFORMERS)
# How `quanteval plan` and the status show a run that computes_on_cpu, in place of its GPUs.
ON_CPU: Final = "CPU: llama.cpp"
# How a named engine appears in a run id (a DNS-1123 label holds no dot).
ID_PART: Final = {
    Engine.TRANSFORMERS: "transformers",
    Engine.LLAMA_CPP: "llamacpp",
    Engine.VLLM: "vllm",
}

# Made by QuantEval for vLLM from the model's source: round to nearest, no calibration.
QUANTEVAL_RTN: Final = frozenset({Precision.W8A8_INT8, Precision.W4A16_G32})
# vLLM's own in-flight FP8: a GPU's, or a CPU's with AMX (the worker checks the device).
VLLM_FP8: Final = frozenset(
    {Precision.FP8_PER_TENSOR, Precision.FP8_PER_CHANNEL, Precision.FP8_PER_BLOCK}
)
_DTYPES: Final = frozenset({Precision.FP32, Precision.BF16, Precision.FP16})
_BITSANDBYTES: Final = frozenset({Precision.INT8, Precision.NF4, Precision.FP4})

RUNS: Final[dict[Engine, frozenset[Precision]]] = {
    Engine.VLLM: _DTYPES | QUANTEVAL_RTN | VLLM_FP8 | {Precision.NATIVE},
    Engine.LLAMA_CPP: frozenset({Precision.NATIVE}),
    Engine.TRANSFORMERS: frozenset(Precision) - QUANTEVAL_RTN - VLLM_FP8,
    Engine.AUTO: frozenset(Precision) - QUANTEVAL_RTN - VLLM_FP8,
}

# On transformers, the nearest precision to one that only vLLM runs.
_ON_TRANSFORMERS: Final = {
    Precision.W8A8_INT8: "torchao-int8wo or int8",
    Precision.W4A16_G32: "torchao-int4wo or hqq-4bit",
    Precision.FP8_PER_TENSOR: "torchao-float8",
    Precision.FP8_PER_CHANNEL: "torchao-float8",
    Precision.FP8_PER_BLOCK: "torchao-float8",
}


def refusal(precision: Precision, engine: Engine) -> str | None:
    """Why `engine` cannot run `precision`, and what to use instead; None when it can."""
    if precision in RUNS[engine]:
        return None
    pair = f"{precision} on {engine}"
    if engine == Engine.LLAMA_CPP:
        return (
            f"{pair}: llama.cpp runs a GGUF file as shipped (precision native) and nothing else; "
            f"run {precision} on transformers (engine auto) or vllm"
        )
    if engine == Engine.VLLM:
        if precision in _BITSANDBYTES:
            why = (
                "bitsandbytes runs on vLLM only through the separate vllm-bnb-plugin package, "
                "which QuantEval does not carry"
            )
            instead = "w8a8-int8 or w4a16-g32 on vllm"
        elif precision.value.startswith("hqq"):
            why, instead = "vLLM has no HQQ", "w4a16-g32 on vllm"
        else:
            why, instead = "torchao's in-flight quantization is transformers'", "w8a8-int8 on vllm"
        return f"{pair}: {why}; use {instead}, or {precision} on transformers (engine auto)"
    origin = "made by QuantEval for vLLM" if precision in QUANTEVAL_RTN else "vLLM's in-flight FP8"
    return (
        f"{pair}: {precision} is {origin}; add vllm to engines, or use "
        f"{_ON_TRANSFORMERS[precision]} on transformers"
    )


def computes_on_cpu(engine: Engine, precision: Precision, source: str) -> bool:
    """Whether a run computes on the CPU whatever node it lands on: llama.cpp's runs (the
    worker's build has no CUDA), named or auto's choice for a GGUF file at native. So its Job
    asks for no GPU that it would hold unused.

    Before the worker resolves a source, only one that names a `.gguf` file (a path or an
    s3:// object) is known to be one. A `package:NAME`, a folder or an s3:// prefix that holds a
    single GGUF file is auto's llama.cpp run too, but only the worker can tell: such a run is
    sized as before (GPUs), and computes on the CPU all the same; name its engine (llama.cpp)
    to size it as one."""
    if engine == Engine.LLAMA_CPP:
        return True
    return engine == Engine.AUTO and precision == Precision.NATIVE and source.endswith(".gguf")


def run_id(model: str, precision: Precision, engine: Engine) -> str:
    """`<model>-<precision>`, and `-<engine>` after it for a named engine."""
    base = f"{model}-{precision.value}"
    return base if engine == Engine.AUTO else f"{base}-{ID_PART[engine]}"


def replicate_id(run: str, replicate: int) -> str:
    """A run's id at its replicate: the first keeps the run's own, the others are `<run>-r<i>`
    (so a manifest that adds replicates keeps the results it has)."""
    return run if replicate == 1 else f"{run}-r{replicate}"


def baseline_engines(engine: Engine, baseline: Precision) -> tuple[Engine, ...]:
    """The engines whose baseline run a run on `engine` may compare with: its own, where that
    runs the baseline precision; else (llama.cpp) the default engine's, first found first."""
    if baseline in RUNS[engine]:
        return (engine,)
    return DEFAULT_ENGINES


def baseline_run(
    baselines: Mapping[tuple[str, Engine], Run], model: str, engine: Engine, baseline: Precision
) -> Run | None:
    """Of the baseline runs by (model, engine), the one a run of `model` on `engine` compares
    with (baseline_engines' order); None where there is none."""
    found = (baselines.get((model, e)) for e in baseline_engines(engine, baseline))
    return next((run for run in found if run is not None), None)


def engine_effect_pairs(
    baselines: Iterable[tuple[str, Engine]],
) -> list[tuple[tuple[str, Engine], tuple[str, Engine]]]:
    """Of the (model, engine) pairs that have a baseline run: each named engine's, with the
    default engine's of the same model it is compared with (the engine effect)."""
    have = set(baselines)
    pairs: list[tuple[tuple[str, Engine], tuple[str, Engine]]] = []
    for model, engine in sorted(have):
        reference = next((e for e in DEFAULT_ENGINES if e != engine and (model, e) in have), None)
        if engine != Engine.AUTO and reference is not None:
            pairs.append(((model, engine), (model, reference)))
    return pairs
