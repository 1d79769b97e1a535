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
    kind: Literal["cpu", "cuda"]  # where the run computes
    # The GPUs the process holds, used or not: GPU-seconds (and so dollars) count them all.
    gpu_names: tuple[str, ...] = ()
    # The lowest compute capability over the pod's GPUs: a model spread over them runs at its pace.
    capability: tuple[int, int] | None = None
    cpu_bf16: bool = False

    @property
    def native_bf16(self) -> bool:
        if self.kind == "cuda":
            return self.capability is not None and self.capability >= NATIVE_BF16_CAPABILITY
        return self.cpu_bf16

    def on_cpu(self) -> "DeviceInfo":
        """The device of a run that computes on the CPU here (llama.cpp: the worker's build has
        no CUDA): the GPUs it holds stay named, since they are paid for all the same."""
        return DeviceInfo("cpu", gpu_names=self.gpu_names)

    def unused_gpus(self) -> list[str]:
        """What a reader of the result must know when GPUs were held but not computed on: they
        are in its GPU-seconds and dollars (a CPU run's Job holds GPUs only where the spec's
        resources.gpus names a number)."""
        if self.kind != "cpu" or not self.gpu_names:
            return []
        count = len(self.gpu_names)
        held = f"{count} GPU{'s' if count > 1 else ''} ({', '.join(self.gpu_names)})"
        return [
            f"computed on the CPU (llama.cpp) while holding {held}, unused: they are counted in "
            "gpuSeconds and dollars; with resources.gpus: auto its Job asks for none"
        ]

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
