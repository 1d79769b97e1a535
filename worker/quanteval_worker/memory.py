"""Memory measurement per phase: CUDA allocator peaks and NVML, or the process's peak RSS.

On Linux, writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM), so each phase's CPU
peak is exact rather than sampled. On a CPU the process's RSS also holds what the allocator kept
from earlier phases (after bitsandbytes' quantizing load on the quick start: about 50 MiB): a
phase that holds the model says what it needs as the model's resident bytes plus the phase's own
growth over the RSS it started from, and the residue is kept as a figure of its own.

glibc's malloc keeps blocks a phase freed in its heaps (its mmap threshold rises as large blocks
are freed, so later ones come from the heap and stay there): on the quick start, bitsandbytes' CPU
int8 temporaries held hundreds of MiB that no tensor used any more. Fixing the threshold instead
made int8 generation about 3x slower, a cost in the time figures; so each phase's end measures what
malloc_trim gives back before anything else is freed, and a CPU phase that holds the model
records it as the peak's cause (`{phase}PeakCause`).
"""

import contextlib
import ctypes
import gc
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from quanteval.api.result import PeakCause


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _release_freed_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _held_by_allocator() -> int:
    """Resident bytes of memory already freed (or unreachable) that the process still held:
    what a garbage collection and malloc_trim give back to the system now."""
    before = _status_bytes("VmRSS")
    _release_freed_memory()
    return max(before - _status_bytes("VmRSS"), 0)


ALLOCATOR_HELD = (
    "freed memory glibc malloc kept in its heaps (returned by malloc_trim at the phase's end)"
)


class PeakPoller:
    """The largest value `read` returns, polled in a thread from `start` to `stop`.

    NVML keeps no peak of a GPU's used memory, so one reading at a phase's end would miss the
    phase's high point; a poll every 20 ms catches any peak that lasts longer than that.
    """

    def __init__(self, read: Callable[[], int], interval_seconds: float = 0.02) -> None:
        self._read = read
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._peak = 0

    def _sample(self) -> None:
        value = self._read()
        with self._lock:
            self._peak = max(self._peak, value)

    def _poll(self) -> None:
        while not self._stopping.wait(self._interval):
            self._sample()

    def start(self) -> None:
        self.restart()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._poll, name="nvml-peak", daemon=True)
        self._thread.start()

    def restart(self) -> int:
        """The peak so far; polling goes on from the value now."""
        value = self._read()
        with self._lock:
            peak, self._peak = self._peak, value
        return max(peak, value)

    def stop(self) -> int:
        """Stop polling; the peak since the last (re)start, a last reading included."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return self._peak


class _NvmlUsed:
    """Used memory summed over the GPUs this process sees, from NVML (0 without pynvml)."""

    def __init__(self) -> None:
        self._handles: list[Any] = []
        try:
            import pynvml
        except ImportError:
            return
        self._pynvml = pynvml
        pynvml.nvmlInit()
        count = torch.cuda.device_count()
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def __call__(self) -> int:
        info = (self._pynvml.nvmlDeviceGetMemoryInfo(h) for h in self._handles)
        return sum(int(i.used) for i in info)


class MemoryMeter:
    """Peaks per phase, above the memory the process held when the meter was made.

    A phase may make several attempts (generation halves its batch on out of memory): each
    attempt's peak is folded in once it succeeds, and a failed one's is dropped, so the figures
    are those of the work that was kept.
    """

    def __init__(self, device: str) -> None:
        self.figures: dict[str, int] = {}
        self.causes: dict[str, PeakCause] = {}  # what made a peak larger than its tensors
        _release_freed_memory()
        if device == "cuda":
            self.start = sum(
                torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())
            )
        else:
            self.start = _status_bytes("VmRSS")
        self.figures["startBytes"] = self.start
        self.phase_start = self.start
        self._nvml = PeakPoller(_NvmlUsed()) if device == "cuda" else None
        self._kept: dict[str, int] = {}  # peaks of the phase's attempts kept so far

    def _current(self) -> dict[str, int]:
        """The peaks since the last reset, by figure."""
        if self._nvml is None:
            return {"PeakRssBytes": _status_bytes("VmHWM")}
        count = torch.cuda.device_count()
        return {
            "MaxAllocatedBytes": sum(torch.cuda.max_memory_allocated(i) for i in range(count)),
            "MaxReservedBytes": sum(torch.cuda.max_memory_reserved(i) for i in range(count)),
        }

    def _reset(self) -> None:
        if self._nvml is not None:
            for index in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(index)
        else:
            # Without it, the peak covers the process's whole life: an upper bound.
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")

    def begin(self) -> None:
        _release_freed_memory()
        self._kept = {}
        self._reset()
        if self._nvml is not None:
            self._nvml.start()
        else:
            self.phase_start = _status_bytes("VmRSS")

    def begin_attempt(self) -> None:
        """Keep the peaks of the phase so far; measure the next attempt on its own."""
        for name, value in self._current().items():
            self._kept[name] = max(self._kept.get(name, 0), value)
        if self._nvml is not None:
            self._kept["NvmlPeakUsedBytes"] = max(
                self._kept.get("NvmlPeakUsedBytes", 0), self._nvml.restart()
            )
        self._reset()

    def discard_attempt(self) -> None:
        """Drop the peaks of the attempt that just failed (the caller emptied the CUDA cache)."""
        _release_freed_memory()
        if self._nvml is not None:
            self._nvml.restart()
        self._reset()

    def end(self, phase: str, holds_bytes: int | None = None) -> int:
        """Record the phase's figures; return its peak above the start.

        `holds_bytes`: on a CPU, the bytes of the model the phase holds resident (its pages
        touched before the phase began); the peak is then those bytes plus the phase's own growth.
        """
        peaks = self._current()
        if self._nvml is not None:
            peaks["NvmlPeakUsedBytes"] = self._nvml.stop()
        for name, value in self._kept.items():
            peaks[name] = max(peaks.get(name, 0), value)
        self.figures |= {f"{phase}{name}": value for name, value in peaks.items()}
        if self._nvml is not None:
            peak = peaks["MaxAllocatedBytes"] - self.start
        else:
            hwm = peaks["PeakRssBytes"]
            held = _held_by_allocator()
            self.figures[f"{phase}AllocatorHeldBytes"] = held
            peak = hwm - self.start
            if holds_bytes is not None:
                self.causes[f"{phase}PeakCause"] = PeakCause(allocation=ALLOCATOR_HELD, bytes=held)
                self.figures[f"{phase}StartRssBytes"] = self.phase_start
                # What earlier phases left in the RSS beyond the start and the model itself.
                residue = self.phase_start - self.start - holds_bytes
                self.figures[f"{phase}ResidueBytes"] = max(residue, 0)
                peak = holds_bytes + (hwm - self.phase_start)
        self.figures[f"{phase}PeakBytes"] = max(peak, 0)
        return max(peak, 0)
