"""Energy counters: NVML's total-energy counter on GPUs, RAPL powercap on CPUs, or why neither.

Both are monotonic counters read at a phase's start and end, so a phase's joules are exact to the
counter's resolution, not sampled power integrated over time.
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class EnergyCounter:
    """A joules reading function and what it measures; or, when none works, `unavailable`."""

    source: str  # "nvml" (every GPU of the pod), "rapl" (CPU packages), or "" when unavailable
    read: Callable[[], float] | None = None
    unavailable: str = ""


def _rapl_zones(root: Path) -> list[Path]:
    """Top-level RAPL zones (the CPU packages); their subzones are already inside them."""
    return sorted(
        zone
        for zone in root.glob("intel-rapl:*")
        if zone.name.count(":") == 1 and (zone / "energy_uj").exists()
    )


def rapl_counter(root: Path = POWERCAP) -> EnergyCounter:
    zones = _rapl_zones(root)
    if not zones:
        return EnergyCounter("", unavailable=f"no RAPL powercap counters under {root}")
    try:
        ranges = [int((z / "max_energy_range_uj").read_text()) for z in zones]
        last = [int((z / "energy_uj").read_text()) for z in zones]
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        return EnergyCounter("", unavailable=f"RAPL powercap counters not readable: {reason}")
    total = [0.0]

    def read() -> float:
        """Joules since the counter was made; each zone's wrap-around (max_energy_range) undone."""
        for index, zone in enumerate(zones):
            now = int((zone / "energy_uj").read_text())
            delta = now - last[index]
            total[0] += (delta if delta >= 0 else delta + ranges[index]) / 1e6
            last[index] = now
        return total[0]

    return EnergyCounter("rapl", read)


def nvml_counter(gpu_count: int) -> EnergyCounter:
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(gpu_count)]
        for handle in handles:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # Volta and later
    except Exception as error:  # NVML missing, no driver, or a GPU without the counter
        return EnergyCounter("", unavailable=f"NVML total-energy counter unavailable: {error}")

    def read() -> float:
        millijoules = sum(pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles)
        return float(millijoules) / 1000

    return EnergyCounter("nvml", read)


def energy_counter(device_kind: str, gpu_count: int = 0) -> EnergyCounter:
    if device_kind == "cuda":
        return nvml_counter(gpu_count)
    return rapl_counter()


def read_or_none(counter: EnergyCounter) -> float | None:
    """A reading, or None when there is no counter or it failed (a phase then has no joules)."""
    if counter.read is None:
        return None
    with contextlib.suppress(Exception):  # sysfs or NVML errors: never fail a run over energy
        return counter.read()
    return None
