"""Memory measurement per phase: CUDA allocator peaks and NVML, or the process's peak RSS.

On Linux, writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM), so each phase's CPU
peak is exact rather than sampled. On a CPU the process's RSS also holds what the allocator kept
from earlier phases (after bitsandbytes' quantizing load on the quick start: about 50 MiB): a
phase that holds the model says what it needs as the model's resident bytes plus the phase's own
growth over the RSS it started from, and the residue is kept as a figure of its own.
"""

import contextlib
import ctypes
import gc
from pathlib import Path

import torch


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _release_freed_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _nvml_used_bytes() -> int:
    try:
        import pynvml
    except ImportError:
        return 0
    pynvml.nvmlInit()
    try:
        total = 0
        for index in range(torch.cuda.device_count()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            total += int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        return total
    finally:
        pynvml.nvmlShutdown()


class MemoryMeter:
    """Peaks per phase, above the memory the process held when the meter was made."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.figures: dict[str, int] = {}
        _release_freed_memory()
        if device == "cuda":
            self.start = sum(
                torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())
            )
        else:
            self.start = _status_bytes("VmRSS")
        self.figures["startBytes"] = self.start
        self.phase_start = self.start

    def begin(self) -> None:
        _release_freed_memory()
        if self.device == "cuda":
            for index in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(index)
        else:
            # Without it, the peak covers the process's whole life: an upper bound.
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")
            self.phase_start = _status_bytes("VmRSS")

    def end(self, phase: str, holds_bytes: int | None = None) -> int:
        """Record the phase's figures; return its peak above the start.

        `holds_bytes`: on a CPU, the bytes of the model the phase holds resident (its pages
        touched before the phase began); the peak is then those bytes plus the phase's own growth.
        """
        if self.device == "cuda":
            count = torch.cuda.device_count()
            allocated = sum(torch.cuda.max_memory_allocated(i) for i in range(count))
            reserved = sum(torch.cuda.max_memory_reserved(i) for i in range(count))
            self.figures[f"{phase}MaxAllocatedBytes"] = allocated
            self.figures[f"{phase}MaxReservedBytes"] = reserved
            self.figures[f"{phase}NvmlUsedBytes"] = _nvml_used_bytes()
            peak = allocated - self.start
        else:
            hwm = _status_bytes("VmHWM")
            self.figures[f"{phase}PeakRssBytes"] = hwm
            peak = hwm - self.start
            if holds_bytes is not None:
                self.figures[f"{phase}StartRssBytes"] = self.phase_start
                # What earlier phases left in the RSS beyond the start and the model itself.
                residue = self.phase_start - self.start - holds_bytes
                self.figures[f"{phase}ResidueBytes"] = max(residue, 0)
                peak = holds_bytes + (hwm - self.phase_start)
        self.figures[f"{phase}PeakBytes"] = max(peak, 0)
        return max(peak, 0)
