"""Precision names, their order, and their storage cost. No torch here: the operator uses it."""

from enum import StrEnum


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"
    NF4 = "nf4"
    FP4 = "fp4"


# Highest first: the default baseline of a model is the first of these that its runs use.
PRECISION_ORDER: tuple[Precision, ...] = (
    Precision.FP32,
    Precision.BF16,
    Precision.FP16,
    Precision.INT8,
    Precision.NF4,
    Precision.FP4,
)

# Bytes per parameter of the quantized weights (bitsandbytes 4-bit packs two weights a byte; its
# block-wise absmax adds about 0.5 bit a weight, counted here).
BYTES_PER_PARAMETER: dict[Precision, float] = {
    Precision.FP32: 4.0,
    Precision.BF16: 2.0,
    Precision.FP16: 2.0,
    Precision.INT8: 1.0,
    Precision.NF4: 0.5625,
    Precision.FP4: 0.5625,
}


def default_baseline(precisions: list[Precision] | tuple[Precision, ...]) -> Precision:
    """The highest precision present."""
    return min(precisions, key=PRECISION_ORDER.index)
