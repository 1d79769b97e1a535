"""Intervals per run and paired tests per comparison, from the runs' generations (quanteval.stats).

Holm's adjustment runs over every comparison of the evaluation at once, so each verdict accounts
for how many were made.
"""

import math
from collections.abc import Mapping, Sequence

from quanteval.api.records import SampleRecord
from quanteval.api.states import RunState
from quanteval.fidelity import FidelityFigures, compare_fidelity
from quanteval.report.data import RunRecord
from quanteval.report.drift import pair_by_sample
from quanteval.report.schema import PairedTest
from quanteval.stats import (
    MIN_PAIRS,
    Interval,
    PairedComparison,
    RunIntervals,
    holm,
    paired_comparison,
    ratio_interval,
    run_intervals,
    verdict,
)


def _emotions(record: RunRecord) -> list[str]:
    return list(record.result.per_emotion) if record.result is not None else []


def quality_intervals(record: RunRecord) -> RunIntervals | None:
    """The run's intervals; None unless it succeeded with at least two generations."""
    if record.state != RunState.SUCCEEDED or record.result is None:
        return None
    generations = record.generations
    return run_intervals(
        [g.emotion for g in generations],
        [g.predicted for g in generations],
        [g.intensity for g in generations],
        _emotions(record),
    )


def compare_generations(
    base: Sequence[SampleRecord], run: Sequence[SampleRecord], emotions: Sequence[str]
) -> tuple[int, int, PairedComparison | None]:
    """`run` against `base` on the samples both generated: pairs, unpaired, the comparison."""
    pairs = pair_by_sample(base, run)
    unpaired = len(base) + len(run) - 2 * len(pairs)
    comparison = paired_comparison(
        [b.emotion for b, _ in pairs],
        [b.predicted for b, _ in pairs],
        [r.predicted for _, r in pairs],
        [b.intensity for b, _ in pairs],
        [r.intensity for _, r in pairs],
        emotions,
    )
    return len(pairs), unpaired, comparison


def _pair(base: RunRecord, record: RunRecord) -> tuple[int, int, PairedComparison | None]:
    return compare_generations(base.generations, record.generations, _emotions(base))


def latency_ratio(base: RunRecord, record: RunRecord) -> tuple[float, Interval] | None:
    """The run's per-sample latency over the baseline's on the pairs, with its interval."""
    pairs = [
        (b.latency_ms, r.latency_ms)
        for b, r in pair_by_sample(base.generations, record.generations)
        if b.latency_ms and r.latency_ms is not None
    ]
    if len(pairs) < MIN_PAIRS:
        return None
    return ratio_interval([b for b, _ in pairs], [r for _, r in pairs])


def _samples_per_prompt(record: RunRecord, factor: float) -> int:
    settings = record.result.generation if record.result is not None else None
    current = settings.samples_per_prompt if settings is not None else 1
    return max(current, math.ceil(current * factor))


def _holm_by_id(tests: Mapping[str, PairedComparison | None]) -> dict[str, float]:
    """Each decided test's McNemar p, Holm-adjusted over all of them, by run id."""
    decided = {run_id: c for run_id, c in tests.items() if c is not None}
    return dict(zip(decided, holm([c.mcnemar_p for c in decided.values()]), strict=True))


def paired_tests(
    records: Sequence[RunRecord], bases: Mapping[str, RunRecord]
) -> dict[str, PairedTest]:
    """Each succeeded run that is not its model's baseline, against that baseline (its
    baselineModel's, where it names one), by run id."""
    measured: dict[str, tuple[RunRecord, int, int, PairedComparison | None]] = {}
    for record in records:
        base = bases.get(record.compared_model)
        if record.state != RunState.SUCCEEDED or base is None or base.run_id == record.run_id:
            continue
        measured[record.run_id] = (record, *_pair(base, record))
    adjusted = _holm_by_id({run_id: c for run_id, (*_, c) in measured.items()})
    tests = {}
    for run_id, (record, pairs, unpaired, c) in measured.items():
        p_adjusted = adjusted.get(run_id)
        latency = latency_ratio(bases[record.compared_model], record)
        if c is None:
            tests[run_id] = PairedTest(pairs, unpaired, verdict(None, None))
            continue
        tests[run_id] = PairedTest(
            pairs=pairs,
            unpaired=unpaired,
            verdict=verdict(c, p_adjusted),
            delta_f1_pp=c.delta_f1_pp,
            ci95=c.delta_f1_ci95_pp,
            p_value=c.mcnemar_p,
            p_value_adjusted=p_adjusted,
            only_baseline_right=c.only_baseline_right,
            only_run_right=c.only_run_right,
            intensity_delta=c.intensity_delta,
            intensity_p_value=c.wilcoxon_p,
            min_detectable_f1_pp=c.min_detectable_pp,
            samples_per_prompt_for_5pp=_samples_per_prompt(record, c.samples_factor_for_5pp),
            latency_ratio=latency[0] if latency else None,
            latency_ratio_ci95=latency[1] if latency else None,
        )
    return tests


def fidelity_against(base: RunRecord, record: RunRecord) -> FidelityFigures | str:
    """The run's fidelity figures against its baseline's, or why there are none."""
    if base.fidelity is None or record.fidelity is None:
        missing = base.run_id if base.fidelity is None else record.run_id
        return f"{missing} has no reference-corpus scores (written before they existed?)"
    try:
        return compare_fidelity(base.fidelity, record.fidelity)
    except ValueError as error:
        return str(error)


def not_worse_than_best(records: Sequence[RunRecord], best_id: str | None) -> tuple[str, ...]:
    """The succeeded runs not significantly worse than the best (itself included), each paired
    with it by sample and tested as comparisons are, Holm-adjusted over the tests made."""
    by_id = {r.run_id: r for r in records if r.state == RunState.SUCCEEDED and r.result is not None}
    best = by_id.get(best_id or "")
    if best is None:
        return ()
    tested: dict[str, PairedComparison | None] = {
        run_id: _pair(best, record)[2] for run_id, record in by_id.items() if run_id != best_id
    }
    adjusted = _holm_by_id(tested)
    worse = {
        run_id
        for run_id, c in tested.items()
        if c is not None and verdict(c, adjusted[run_id]) == "significantly worse"
    }
    return tuple(r.run_id for r in records if r.run_id in by_id and r.run_id not in worse)
