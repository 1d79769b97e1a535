"""fp32, bf16, fp16: the checkpoint's weights cast to a torch dtype."""

import torch

from quanteval.precisions import Precision
from quanteval_worker.precisions.base import PrecisionStrategy


class TorchDtypeStrategy(PrecisionStrategy):
    alternative = "fp16"

    def __init__(self, precision: Precision, dtype: torch.dtype) -> None:
        super().__init__(precision, dtype, uses_bf16=dtype == torch.bfloat16)
