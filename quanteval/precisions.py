"""Precision names, their order, and their storage cost. No torch here: the operator uses it.

A name says its backend where more than one could mean it: `int8` is bitsandbytes LLM.int8 (the
study's), `torchao-int8wo` is torchao's int8 weight-only, `hqq-4bit` is HQQ at 4 bits. `w8a8-int8`,
`w4a16-g32` and the `fp8-per-*` precisions are vLLM's (quanteval.engines says which engine runs
which precision): the first two made by QuantEval from the model's source (round to nearest, no
calibration) in compressed-tensors' format, the FP8 ones vLLM's own in-flight quantization.
`native` is a checkpoint as it was quantized before we got it (its own quantization_config, or a
GGUF file run by llama.cpp): what it stores is the checkpoint's to say, so it has no fixed size and
is never a default baseline.
"""

from enum import StrEnum


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"
    NF4 = "nf4"
    FP4 = "fp4"
    TORCHAO_INT8WO = "torchao-int8wo"
    TORCHAO_FLOAT8 = "torchao-float8"
    TORCHAO_INT4WO = "torchao-int4wo"
    HQQ_4BIT = "hqq-4bit"
    HQQ_3BIT = "hqq-3bit"
    HQQ_2BIT = "hqq-2bit"
    W8A8_INT8 = "w8a8-int8"
    W4A16_G32 = "w4a16-g32"
    FP8_PER_TENSOR = "fp8-per-tensor"
    FP8_PER_CHANNEL = "fp8-per-channel"
    FP8_PER_BLOCK = "fp8-per-block"
    NATIVE = "native"


# Highest first: the default baseline of a model is the first of these that its runs use.
PRECISION_ORDER: tuple[Precision, ...] = (
    Precision.FP32,
    Precision.BF16,
    Precision.FP16,
    Precision.INT8,
    Precision.TORCHAO_INT8WO,
    Precision.TORCHAO_FLOAT8,
    Precision.W8A8_INT8,
    Precision.FP8_PER_TENSOR,
    Precision.FP8_PER_CHANNEL,
    Precision.FP8_PER_BLOCK,
    Precision.NF4,
    Precision.FP4,
    Precision.TORCHAO_INT4WO,
    Precision.W4A16_G32,
    Precision.HQQ_4BIT,
    Precision.HQQ_3BIT,
    Precision.HQQ_2BIT,
    Precision.NATIVE,
)

# Bytes per parameter of the quantized weights with their scales: bitsandbytes 4-bit packs two
# weights a byte and its block-wise absmax adds about 0.5 bit a weight; torchao int4 keeps a bf16
# scale and zero per group of 128; HQQ an fp16 scale and zero per group of 64 and packs 3-bit
# weights ten to an int32 (3.2 bits); int8 and float8 weight-only keep one scale per row, as do
# w8a8-int8 and FP8 per channel (per tensor: one, per block: one a 128 x 128 block); w4a16-g32
# keeps a 16-bit scale per group of 32 (symmetric: no zero point).
BYTES_PER_PARAMETER: dict[Precision, float] = {
    Precision.FP32: 4.0,
    Precision.BF16: 2.0,
    Precision.FP16: 2.0,
    Precision.INT8: 1.0,
    Precision.NF4: 0.5625,
    Precision.FP4: 0.5625,
    Precision.TORCHAO_INT8WO: 1.0,
    Precision.TORCHAO_FLOAT8: 1.0,
    Precision.TORCHAO_INT4WO: 0.53125,
    Precision.HQQ_4BIT: 0.5625,
    Precision.HQQ_3BIT: 0.4625,
    Precision.HQQ_2BIT: 0.3125,
    Precision.W8A8_INT8: 1.0,
    Precision.W4A16_G32: 0.5625,
    Precision.FP8_PER_TENSOR: 1.0,
    Precision.FP8_PER_CHANNEL: 1.0,
    Precision.FP8_PER_BLOCK: 1.0,
}


def default_baseline(precisions: list[Precision] | tuple[Precision, ...]) -> Precision | None:
    """The highest precision present; never native (a checkpoint's own quantization is what is
    measured against a reference, not the reference). None when native is all there is."""
    chosen = [p for p in precisions if p != Precision.NATIVE]
    return min(chosen, key=PRECISION_ORDER.index) if chosen else None


def parse_precision_suffix(name: str) -> tuple[str, Precision] | None:
    """`<prefix>-<precision>` split at the precision it ends with (precisions hold hyphens, and
    so do model names); None when it ends with none."""
    for precision in sorted(Precision, key=lambda p: len(p.value), reverse=True):
        prefix = name.removesuffix(f"-{precision.value}")
        if prefix != name and prefix:
            return prefix, precision
    return None
