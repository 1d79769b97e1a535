"""Energy counters: RAPL powercap read as the kernel lays it out, or a reason when absent."""

from pathlib import Path

import pytest

from quanteval_worker.energy import rapl_counter


def _zone(root: Path, name: str, energy_uj: int, max_uj: int) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_rapl_sums_the_packages_and_undoes_a_wrap(tmp_path: Path) -> None:
    package0 = _zone(tmp_path, "intel-rapl:0", 999_000_000, 1_000_000_000)
    package1 = _zone(tmp_path, "intel-rapl:1", 5_000_000, 1_000_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 1, 1_000_000_000)  # a subzone: inside package 0 already
    counter = rapl_counter(tmp_path)
    assert counter.source == "rapl" and counter.read is not None
    (package0 / "energy_uj").write_text("2000000\n")  # wrapped: 1,000,000 + 2,000,000 uJ
    (package1 / "energy_uj").write_text("6500000\n")  # 1,500,000 uJ
    assert counter.read() == pytest.approx(4.5)


def test_without_counters_the_reason_is_given(tmp_path: Path) -> None:
    counter = rapl_counter(tmp_path)
    assert counter.read is None and str(tmp_path) in counter.unavailable
