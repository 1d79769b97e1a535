"""HQQ (half-quadratic quantization) at 4, 3 and 2 bits, groups of 64, fp16 compute.

A GPU precision: transformers refuses an HQQ model whose device map holds the CPU ("not
supported"), and without a device map it has no CPU path either (measured with transformers
5.24 and hqq 0.2.8).
"""

from typing import Any, ClassVar

import torch

from quanteval.precisions import Precision
from quanteval_worker.precisions.base import PrecisionStrategy

GROUP_SIZE = 64
BITS = {Precision.HQQ_4BIT: 4, Precision.HQQ_3BIT: 3, Precision.HQQ_2BIT: 2}


class HqqStrategy(PrecisionStrategy):
    alternative = "nf4"
    required_packages = ("hqq", "accelerate")
    devices: ClassVar[frozenset[str]] = frozenset({"cuda"})

    def __init__(self, precision: Precision) -> None:
        super().__init__(precision, torch.float16, uses_bf16=False)

    def quantization_config(self) -> Any:
        from transformers import HqqConfig

        return HqqConfig(nbits=BITS[self.precision], group_size=GROUP_SIZE)
