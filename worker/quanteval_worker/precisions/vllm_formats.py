"""The precisions only vLLM runs: QuantEval's own RTN checkpoints (w8a8-int8, w4a16-g32, made with
compressed-tensors before vLLM loads them) and vLLM's in-flight FP8 (per tensor, channel, block).

vLLM's FP8 kernels need a GPU (compute capability 8.0 on; W8A8 from 8.9, weight-only on 8.0 via
Marlin) or, on a CPU, AMX tiles: a CPU without them is refused before anything loads.
"""

from pathlib import Path
from typing import ClassVar

import torch

from quanteval.api.errors import CannotLoadError
from quanteval.precisions import Precision
from quanteval_worker.device import DeviceInfo
from quanteval_worker.precisions.base import Bf16Mode, PrecisionStrategy

VLLM_INSTALL = "bash scripts/setup-vllm-venv.sh"


def cpu_has_amx() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


class VllmRtnStrategy(PrecisionStrategy):
    alternative = "bf16 on vllm"
    required_packages = ("vllm", "compressed_tensors")
    install = VLLM_INSTALL

    def __init__(self, precision: Precision) -> None:
        super().__init__(precision, torch.bfloat16, uses_bf16=True)


class VllmFp8Strategy(PrecisionStrategy):
    alternative = "w8a8-int8 on vllm"
    required_packages = ("vllm",)
    install = VLLM_INSTALL
    min_capability: ClassVar[tuple[int, int] | None] = (8, 0)

    def __init__(self, precision: Precision) -> None:
        super().__init__(precision, torch.bfloat16, uses_bf16=True)

    def check(self, device: DeviceInfo, allow_bf16_emulation: bool = False) -> Bf16Mode:
        if device.kind == "cpu" and not cpu_has_amx():
            raise CannotLoadError(
                f"precision {self.precision} on vllm: vLLM's FP8 kernels need a GPU or a CPU "
                "with AMX (amx_tile), which this CPU does not have: use w8a8-int8 on vllm here, "
                "or run it on a GPU node (spec.resources.gpus)"
            )
        return super().check(device, allow_bf16_emulation)
