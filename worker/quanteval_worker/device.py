"""The device a run executes on, as plain data, so what it supports can be decided without it."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

# bf16 arithmetic in hardware: NVIDIA from Ampere (compute capability 8.0) on.
NATIVE_BF16_CAPABILITY = (8, 0)
# x86 CPU flags of bf16 instructions (oneDNN uses them; without them it converts through fp32).
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class DeviceInfo:
    kind: Literal["cpu", "cuda"]
    gpu_names: tuple[str, ...] = ()
    # The lowest compute capability over the pod's GPUs: a model spread over them runs at its pace.
    capability: tuple[int, int] | None = None
    cpu_bf16: bool = False

    @property
    def native_bf16(self) -> bool:
        if self.kind == "cuda":
            return self.capability is not None and self.capability >= NATIVE_BF16_CAPABILITY
        return self.cpu_bf16

    def describe(self) -> str:
        if self.kind == "cpu":
            return "the CPU"
        major, minor = self.capability or (0, 0)
        return f"GPU {self.gpu_names[0]} (compute capability {major}.{minor})"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in _CPU_BF16_FLAGS)


def detect_device() -> DeviceInfo:
    if not torch.cuda.is_available():
        return DeviceInfo("cpu", cpu_bf16=_cpu_has_bf16())
    count = torch.cuda.device_count()
    return DeviceInfo(
        "cuda",
        gpu_names=tuple(torch.cuda.get_device_name(i) for i in range(count)),
        capability=min(torch.cuda.get_device_capability(i) for i in range(count)),
    )
