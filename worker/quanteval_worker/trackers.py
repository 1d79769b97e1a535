"""Measurement per phase as a context manager (optimum-benchmark's trackers): wall time, memory
and energy; and the run's GPU-seconds and CPU-seconds.

A phase's figures are kept only when the phase succeeds, so a failed attempt never leaves its
numbers in the result.
"""

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager

from quanteval_worker.device import DeviceInfo
from quanteval_worker.energy import energy_counter, read_or_none
from quanteval_worker.memory import MemoryMeter


def cpu_seconds_used() -> float:
    """The process's CPU time so far: user and system, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PhaseTracker:
    """Made once the run's cheap checks are done, so the memory baseline excludes the classifier
    and tokenizer; `work_began` / `cpu_began` date from the run's start, so GPU- and CPU-seconds
    cover all its work."""

    def __init__(self, device: DeviceInfo, work_began: float, cpu_began: float) -> None:
        self.device = device
        self.memory = MemoryMeter(device.kind)
        self.energy = energy_counter(device.kind, len(device.gpu_names))
        self.seconds: dict[str, float] = {}
        self.peaks: dict[str, int] = {}
        self.joules: dict[str, float] = {}
        self._began = work_began
        self._cpu_began = cpu_began
        self._energy_at_phase_start: float | None = None

    @contextmanager
    def phase(self, name: str, holds_bytes: int | None = None) -> Iterator[None]:
        """Measure the phase; `holds_bytes`: the model's resident bytes it holds (MemoryMeter)."""
        self.memory.begin()
        energy_before = read_or_none(self.energy)
        self._energy_at_phase_start = energy_before
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started
        energy_after = read_or_none(self.energy)
        self.peaks[name] = self.memory.end(name, holds_bytes)
        if energy_before is not None and energy_after is not None:
            self.joules[name] = energy_after - energy_before

    def joules_so_far(self) -> float | None:
        """The running phase's energy so far (None without a counter): what a cut-off attempt
        recorded at its last checkpoint."""
        now = read_or_none(self.energy)
        start = self._energy_at_phase_start
        return None if now is None or start is None else now - start

    def gpu_seconds(self) -> float:
        """GPUs held x wall seconds of the run's work so far (0 on a CPU)."""
        return len(self.device.gpu_names) * (time.perf_counter() - self._began)

    def cpu_seconds(self) -> float:
        """CPU time the run's work has used so far."""
        return cpu_seconds_used() - self._cpu_began
