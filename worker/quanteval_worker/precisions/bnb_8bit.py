"""int8: bitsandbytes LLM.int8 at its default outlier threshold (6.0), as in the study.

int8 weights with fp16 outlier columns; the modules it leaves alone (embeddings, lm_head) stay
fp16. Unlike optimum-benchmark's preset (`llm_int8_threshold: 0`), the threshold is not changed.
"""

from typing import Any

import torch

from quanteval.precisions import Precision
from quanteval_worker.precisions.base import PrecisionStrategy


class Bnb8BitStrategy(PrecisionStrategy):
    alternative = "fp16"
    required_packages = ("bitsandbytes", "accelerate")

    def __init__(self) -> None:
        super().__init__(Precision.INT8, torch.float16, uses_bf16=False)

    def quantization_config(self) -> Any:
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_8bit=True)
