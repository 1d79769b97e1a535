"""nf4 and fp4: bitsandbytes 4-bit weights with bf16 compute; untouched modules stay bf16."""

from typing import Any

import torch

from quanteval.precisions import Precision
from quanteval_worker.precisions.base import PrecisionStrategy


class Bnb4BitStrategy(PrecisionStrategy):
    alternative = "int8"
    required_packages = ("bitsandbytes", "accelerate")

    def __init__(self, precision: Precision) -> None:
        super().__init__(precision, torch.bfloat16, uses_bf16=True)

    def quantization_config(self) -> Any:
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.precision.value,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
