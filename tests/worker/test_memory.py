"""CPU phase peaks: what the phase needs, not what earlier phases left in the process's RSS."""

import torch

from quanteval_worker.memory import MemoryMeter

MIB = 2**20


def test_a_phase_peak_is_the_model_it_holds_plus_its_own_growth() -> None:
    meter = MemoryMeter("cpu")
    left_over = torch.ones(300 * MIB, dtype=torch.uint8)  # what an earlier phase kept resident
    meter.begin()
    during = torch.ones(100 * MIB, dtype=torch.uint8)  # the phase's own allocation
    del during
    peak = meter.end("generation", holds_bytes=50 * MIB)
    assert 140 * MIB <= peak <= 190 * MIB  # 50 MiB held + 100 MiB grown, not the 300 left over
    assert meter.figures["generationResidueBytes"] >= 230 * MIB  # 300 MiB, less the 50 held
    assert meter.figures["generationPeakRssBytes"] >= meter.start + 390 * MIB  # raw, kept
    del left_over
