"""One strategy per precision: what it needs from the device, and how transformers loads it.

Modelled on transformers' quantizers: each strategy says what it needs before anything loads, so a
precision the device cannot run fails fast with a reason instead of a stack trace.
"""

import importlib.util
from dataclasses import dataclass
from typing import Any

import torch

from quanteval.exitcodes import CannotLoadError
from quanteval.precisions import Precision


@dataclass(frozen=True)
class PrecisionStrategy:
    precision: Precision
    # The dtype of the weights (float precisions) or of the modules left unquantized (bitsandbytes).
    dtype: torch.dtype
    bitsandbytes: bool = False

    def check(self, device: str) -> None:
        """Raise CannotLoadError when this precision cannot run on `device` here."""
        if self.bitsandbytes and importlib.util.find_spec("bitsandbytes") is None:
            raise CannotLoadError(
                f"precision {self.precision} needs bitsandbytes, which is not installed "
                "(pip install 'quanteval[worker]')"
            )
        if device == "cuda" and self.dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise CannotLoadError(
                f"precision {self.precision} needs bf16 support; GPU "
                f"{torch.cuda.get_device_name(0)} has none (use fp16)"
            )

    def quantization_config(self) -> Any:
        if not self.bitsandbytes:
            return None
        from transformers import BitsAndBytesConfig

        if self.precision == Precision.INT8:
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.precision.value,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )

    def load_kwargs(self, device: str, max_memory: dict[int | str, str] | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        config = self.quantization_config()
        if config is not None:
            kwargs["quantization_config"] = config
        if device == "cuda":
            kwargs["device_map"] = "auto"  # spreads a model over every GPU of the pod
            if max_memory:
                kwargs["max_memory"] = max_memory
        else:
            kwargs["device_map"] = {"": "cpu"}
        return kwargs


STRATEGIES: dict[Precision, PrecisionStrategy] = {
    Precision.FP32: PrecisionStrategy(Precision.FP32, torch.float32),
    Precision.BF16: PrecisionStrategy(Precision.BF16, torch.bfloat16),
    Precision.FP16: PrecisionStrategy(Precision.FP16, torch.float16),
    # LLM.int8 as in the study: int8 weights with fp16 outliers, the rest of the model in fp16.
    Precision.INT8: PrecisionStrategy(Precision.INT8, torch.float16, bitsandbytes=True),
    # bitsandbytes 4-bit with bf16 compute; the modules it leaves alone stay bf16.
    Precision.NF4: PrecisionStrategy(Precision.NF4, torch.bfloat16, bitsandbytes=True),
    Precision.FP4: PrecisionStrategy(Precision.FP4, torch.bfloat16, bitsandbytes=True),
}
