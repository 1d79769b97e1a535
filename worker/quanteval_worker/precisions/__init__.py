"""The precision registry: one strategy per precision name, one module per family."""

import torch

from quanteval.precisions import Precision
from quanteval_worker.precisions.base import Bf16Mode, PrecisionStrategy
from quanteval_worker.precisions.bnb_4bit import Bnb4BitStrategy
from quanteval_worker.precisions.bnb_8bit import Bnb8BitStrategy
from quanteval_worker.precisions.hqq import HqqStrategy
from quanteval_worker.precisions.native import NativeStrategy
from quanteval_worker.precisions.torch_dtype import TorchDtypeStrategy
from quanteval_worker.precisions.torchao import (
    TorchAoFloat8Strategy,
    TorchAoInt4Strategy,
    TorchAoStrategy,
)
from quanteval_worker.precisions.vllm_formats import VllmFp8Strategy, VllmRtnStrategy

STRATEGIES: dict[Precision, PrecisionStrategy] = {
    Precision.FP32: TorchDtypeStrategy(Precision.FP32, torch.float32),
    Precision.BF16: TorchDtypeStrategy(Precision.BF16, torch.bfloat16),
    Precision.FP16: TorchDtypeStrategy(Precision.FP16, torch.float16),
    Precision.INT8: Bnb8BitStrategy(),
    Precision.NF4: Bnb4BitStrategy(Precision.NF4),
    Precision.FP4: Bnb4BitStrategy(Precision.FP4),
    Precision.TORCHAO_INT8WO: TorchAoStrategy(Precision.TORCHAO_INT8WO),
    Precision.TORCHAO_FLOAT8: TorchAoFloat8Strategy(Precision.TORCHAO_FLOAT8),
    Precision.TORCHAO_INT4WO: TorchAoInt4Strategy(Precision.TORCHAO_INT4WO),
    Precision.HQQ_4BIT: HqqStrategy(Precision.HQQ_4BIT),
    Precision.HQQ_3BIT: HqqStrategy(Precision.HQQ_3BIT),
    Precision.HQQ_2BIT: HqqStrategy(Precision.HQQ_2BIT),
    Precision.W8A8_INT8: VllmRtnStrategy(Precision.W8A8_INT8),
    Precision.W4A16_G32: VllmRtnStrategy(Precision.W4A16_G32),
    Precision.FP8_PER_TENSOR: VllmFp8Strategy(Precision.FP8_PER_TENSOR),
    Precision.FP8_PER_CHANNEL: VllmFp8Strategy(Precision.FP8_PER_CHANNEL),
    Precision.FP8_PER_BLOCK: VllmFp8Strategy(Precision.FP8_PER_BLOCK),
    Precision.NATIVE: NativeStrategy(),
}


def strategy_for(precision: Precision) -> PrecisionStrategy:
    return STRATEGIES[precision]


__all__ = ["STRATEGIES", "Bf16Mode", "PrecisionStrategy", "strategy_for"]
