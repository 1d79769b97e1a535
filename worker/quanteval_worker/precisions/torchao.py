"""torchao weight-only quantization: int8 and float8 per row, int4 per group of 128 (bf16 compute).

int4 packs for tinygemm (`tile_packed_to_4d`), a CUDA kernel of Ampere (8.0) and later: torchao
has no CPU int4 weight-only layout that stores 4 bits (its CPU fallback keeps int8). float8
weight-only runs on a CPU and, in hardware, on GPUs of compute capability 8.9 and later.
"""

from typing import Any, ClassVar

import torch

from quanteval.precisions import Precision
from quanteval_worker.precisions.base import PrecisionStrategy

INT4_GROUP_SIZE = 128


class TorchAoStrategy(PrecisionStrategy):
    alternative = "int8"
    required_packages = ("torchao", "accelerate")

    def __init__(self, precision: Precision) -> None:
        super().__init__(precision, torch.bfloat16, uses_bf16=True)

    def quantization_config(self) -> Any:
        from torchao.quantization import (
            Float8WeightOnlyConfig,
            Int4WeightOnlyConfig,
            Int8WeightOnlyConfig,
        )
        from transformers import TorchAoConfig

        configs: dict[Precision, Any] = {
            Precision.TORCHAO_INT8WO: Int8WeightOnlyConfig,
            Precision.TORCHAO_FLOAT8: Float8WeightOnlyConfig,
            Precision.TORCHAO_INT4WO: lambda: Int4WeightOnlyConfig(
                group_size=INT4_GROUP_SIZE, int4_packing_format="tile_packed_to_4d"
            ),
        }
        return TorchAoConfig(configs[self.precision]())


class TorchAoInt4Strategy(TorchAoStrategy):
    devices: ClassVar[frozenset[str]] = frozenset({"cuda"})
    min_capability = (8, 0)


class TorchAoFloat8Strategy(TorchAoStrategy):
    min_capability = (8, 9)
