"""Dollars only from a price given: GPU-hours and CPU-hours, never an invented price."""

import pytest

from quanteval.api.spec import CostSpec, parse_manifest
from quanteval.cost import per_thousand, run_dollars, with_default_cost
from tests.builders import make_manifest


def test_a_gpu_run_costs_its_gpu_hours_and_its_priced_cpu_time() -> None:
    assert run_dollars(7200, 3600, CostSpec(gpu_hour_usd=2.5)) == pytest.approx(5.0)
    both = CostSpec(gpu_hour_usd=2.5, cpu_hour_usd=0.05)
    assert run_dollars(7200, 3600, both) == pytest.approx(5.05)


def test_no_price_for_what_the_run_used_means_no_dollars() -> None:
    assert run_dollars(7200, 3600, CostSpec(cpu_hour_usd=0.05)) is None  # GPUs unpriced
    assert run_dollars(0, 3600, CostSpec(gpu_hour_usd=2.5)) is None  # a CPU run, CPU unpriced
    assert run_dollars(0, 1800, CostSpec(cpu_hour_usd=0.1)) == pytest.approx(0.05)


def test_dollars_per_thousand_generations() -> None:
    assert per_thousand(0.35, 70) == pytest.approx(5.0)
    assert per_thousand(None, 70) is None and per_thousand(1.0, 0) is None


def test_the_spec_price_wins_over_a_default() -> None:
    manifest = parse_manifest(
        make_manifest(
            "priced",
            [{"name": "m", "source": "x/y"}],
            precisions=["fp16"],
            cost={"gpuHourUSD": 4.0},
        )
    )
    merged = with_default_cost(manifest, 2.5, 0.05).spec.cost
    assert (merged.gpu_hour_usd, merged.cpu_hour_usd) == (4.0, 0.05)
    assert with_default_cost(manifest, None, None).spec.cost.cpu_hour_usd is None
