"""CPU phase peaks: what the phase needs, not what earlier phases left in the process's RSS."""

import threading

import torch

from quanteval_worker.memory import MemoryMeter, PeakPoller

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


def test_freed_memory_the_allocator_keeps_is_measured_as_the_peaks_cause() -> None:
    meter = MemoryMeter("cpu")
    meter.begin()
    blocks = [torch.ones(64 * 1024, dtype=torch.uint8) for _ in range(2000)]  # heap-sized
    kept = blocks[1::2]
    del blocks  # every other block freed: holes between live blocks, which malloc keeps
    meter.end("generation", holds_bytes=0)
    cause = meter.causes["generationPeakCause"]
    assert "malloc" in cause.allocation
    assert cause.bytes >= 40 * MIB  # of the 62.5 MiB freed
    assert meter.figures["generationAllocatorHeldBytes"] == cause.bytes
    del kept


def test_the_poller_keeps_a_peak_that_was_over_before_the_phase_ended() -> None:
    readings = iter([100, 300, 900, 400])  # a high point in the middle of the phase
    past_the_peak = threading.Event()

    def read() -> int:
        value = next(readings, 200)
        if value == 400:
            past_the_peak.set()
        return value

    poller = PeakPoller(read, interval_seconds=0.001)
    poller.start()
    assert past_the_peak.wait(timeout=10)
    assert poller.stop() == 900  # one reading at the end would say 200


def test_a_failed_attempts_peak_is_not_counted() -> None:
    meter = MemoryMeter("cpu")
    meter.begin()
    meter.begin_attempt()
    kept = torch.ones(100 * MIB, dtype=torch.uint8)  # the attempt that worked
    del kept
    meter.begin_attempt()
    failed = torch.ones(400 * MIB, dtype=torch.uint8)  # the attempt that ran out of memory
    del failed
    meter.discard_attempt()
    meter.begin_attempt()
    retried = torch.ones(50 * MIB, dtype=torch.uint8)  # the smaller batch that then fitted
    del retried
    peak = meter.end("generation")
    assert 90 * MIB <= peak <= 250 * MIB  # the 100 MiB attempt, not the 400 MiB one
