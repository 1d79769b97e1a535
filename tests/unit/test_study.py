"""The study's headline figures checked on an evaluation's data (quanteval.report.study)."""

from dataclasses import replace

import numpy as np

from quanteval.api.states import RunState
from quanteval.precisions import Precision
from quanteval.report.claim import CONTRADICTED, SUPPORTED, UNSETTLED
from quanteval.report.data import RunRecord
from quanteval.report.replicates import replicate_groups
from quanteval.report.schema import BaselineComparison, PairedTest, RunReport
from quanteval.report.study import (
    MEASURED_ONCE,
    ROUGHLY_DOUBLE,
    quality_claim,
    size_ranks,
    study_claims,
    time_claim,
)
from tests.builders import make_result

INT8, FP32 = Precision.INT8, Precision.FP32


def _vs(delta: float = 0.0, ci: tuple[float, float] | None = None) -> BaselineComparison:
    paired = PairedTest(pairs=70, unpaired=0, verdict="", mark="", delta_f1_pp=delta, ci95=ci)
    return BaselineComparison(
        "m-fp32", 74.9, 60.2, delta, 2.0, 70, None, None, None, None, paired=paired
    )


def _run(run_id: str, precision: Precision, tpot: float | None = None, **vs: object) -> RunReport:
    return RunReport(
        run_id=run_id,
        model=run_id.rsplit("-", 1)[0],
        precision=precision,
        state=RunState.SUCCEEDED,
        reason="",
        baseline=FP32,
        is_baseline=precision == FP32,
        tpot_ms=tpot,
        vs_baseline=_vs(**vs) if precision == INT8 else None,  # type: ignore[arg-type]
    )


def _record(run_id: str, precision: Precision, tpot: float, replicate: int = 1) -> RunRecord:
    result = make_result("m", precision, f1=0.5, weights=10, peak=10, seconds=1.0)
    metrics = result.metrics.model_copy(update={"tpot_p50_ms": tpot})
    result = result.model_copy(update={"metrics": metrics, "replicate": replicate})
    return RunRecord(run_id, "m", precision, RunState.SUCCEEDED, result=result, replicate=replicate)


def test_the_time_check_without_replicates_says_measured_once_with_the_batch_and_device() -> None:
    runs = [_run("m-fp32", FP32, tpot=10.0), _run("m-int8", INT8, tpot=19.3)]
    records = [_record("m-fp32", FP32, 10.0), _record("m-int8", INT8, 19.3)]
    claims = study_claims(runs, replicate_groups(records), {})
    time = next(c for c in claims if "inference time" in c.claim)
    assert time.outcome == MEASURED_ONCE and time.ci95 is None
    assert time.measured == "measured once: 1.93x TPOT p50 at batch 4 on a CPU"


def test_the_time_check_with_replicates_holds_the_true_ratio_in_90_percent_of_repeats() -> None:
    """Simulated repeated pairs: a true 2.0x, each run's speed off by 10% (log-normal) run to
    run, three replicates of each: the interval holds 2.0 in at least 90% of evaluations."""
    rng = np.random.default_rng(7)
    held, verdicts = 0, []
    trials = 400
    for _ in range(trials):
        fp32 = list(10.0 * np.exp(rng.normal(0, 0.1, 3)))
        int8 = list(20.0 * np.exp(rng.normal(0, 0.1, 3)))
        claim = time_claim(_run("m-int8", INT8, int8[0]), None, int8, fp32, "at batch 1 on x")
        assert claim.ci95 is not None
        held += claim.ci95[0] <= 2.0 <= claim.ci95[1]
        verdicts.append(claim.outcome)
    assert held / trials >= 0.9
    # A true 2.0x is inside 1.5-2.5: never contradicted; supported where the interval is narrow.
    assert ROUGHLY_DOUBLE == (1.5, 2.5)
    assert CONTRADICTED not in verdicts and SUPPORTED in verdicts


def test_a_larger_model_that_gains_does_not_support_a_decrease_for_larger_models() -> None:
    ranks = size_ranks(["big", "small"], {"big": 70_000_000_000, "small": 7_000_000_000})
    assert ranks == {"big": "larger", "small": "smaller"}
    gained = replace(_run("big-int8", INT8, delta=8.0, ci=(2.0, 9.5)), model="big")
    claim = quality_claim(gained, ranks["big"])
    assert claim.claim == "8 bit costs a larger model up to 10 F1 points"
    assert claim.outcome == CONTRADICTED
    assert "the study scored prompt + continuation" in claim.measured
    # The same gain on a smaller model is the study's direction.
    assert quality_claim(gained, ranks["small"]).outcome == SUPPORTED
    lost = _run("big-int8", INT8, delta=-4.0, ci=(-7.0, -1.0))
    assert quality_claim(lost, "larger").outcome == SUPPORTED
    assert quality_claim(_run("big-int8", INT8, delta=1.0, ci=(-3.0, 5.0)), "larger").outcome == (
        UNSETTLED
    )


def test_one_model_has_no_size_rank_and_is_checked_against_ten_points_either_way() -> None:
    assert size_ranks(["only"], {"only": 135_000_000}) == {}
    claim = quality_claim(_run("only-int8", INT8, delta=8.0, ci=(2.0, 9.5)), None)
    assert claim.outcome == SUPPORTED and "no size rank" in claim.claim


def test_the_76_percent_line_names_each_quantity_with_its_distance() -> None:
    runs = [_run("m-fp32", FP32), _run("m-int8", INT8)]
    base, run = _record("m-fp32", FP32, 10.0), _record("m-int8", INT8, 19.3)
    assert base.result is not None and run.result is not None
    gpu = {"device": "cuda", "environment": {"gpus": ["NVIDIA H100"]}}
    base = replace(base, result=base.result.model_copy(update=gpu))
    base = replace(
        base,
        result=base.result.model_copy(  # type: ignore[union-attr]
            update={"memory": {"generationNvmlPeakUsedBytes": 1000}}
        ),
    )
    run = replace(
        run,
        result=run.result.model_copy(update=gpu | {"memory": {"generationNvmlPeakUsedBytes": 300}}),
    )
    memory = study_claims(runs, replicate_groups([base, run]), {})[0]
    assert memory.measured == (
        "weights saving 74.9% (-1.1 points from 76); "
        "allocator peak (torch max allocated) saving 60.2% (-15.8 points from 76); "
        "NVML device peak saving 70.0% (-6.0 points from 76)"
    )
    assert memory.outcome == "measured (the study names no quantity)"
