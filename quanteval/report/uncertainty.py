"""Intervals per run and paired tests per comparison, from the runs' generations (quanteval.stats).

The evaluation's comparisons are one family: the permutation tests' p-values are Holm-adjusted
together and each interval is shown at 1 - 0.05/k, so each mark accounts for how many were made.
"""

from collections.abc import Mapping, Sequence

from quanteval.api.records import SampleRecord
from quanteval.api.states import RunState
from quanteval.fidelity import FidelityFigures, compare_fidelity
from quanteval.power import (
    DETECT_PP,
    Design,
    intraclass_of,
    samples_per_prompt_for,
    templates_for,
)
from quanteval.report.data import RunRecord
from quanteval.report.drift import pair_by_sample
from quanteval.report.schema import PairedTest
from quanteval.stats import (
    MIN_PAIRS,
    Interval,
    PairedComparison,
    RunIntervals,
    Settled,
    paired_comparison,
    ratio_interval,
    run_intervals,
    settle_family,
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
    """`run` against `base` on the samples both generated: pairs, unpaired, the comparison
    (with each pair's prompt template as its unit)."""
    pairs = pair_by_sample(base, run)
    unpaired = len(base) + len(run) - 2 * len(pairs)
    comparison = paired_comparison(
        [b.prompt_id for b, _ in pairs],
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


def _design(record: RunRecord, c: PairedComparison) -> Design:
    settings = record.result.generation if record.result is not None else None
    samples_per_prompt = settings.samples_per_prompt if settings is not None else 1
    emotions = max(1, round(c.pairs / (c.templates * samples_per_prompt)))
    return Design(c.templates, emotions, samples_per_prompt)


def too_few(pairs: int) -> str:
    return f"cannot decide: {pairs} paired samples (fewer than {MIN_PAIRS}) or one template"


def paired_test(
    record: RunRecord,
    pairs: int,
    unpaired: int,
    c: PairedComparison | None,
    settled: Settled | None,
    latency: tuple[float, Interval] | None = None,
) -> PairedTest:
    """The report's figures of one comparison, settled within its family."""
    if c is None or settled is None:
        return PairedTest(pairs, unpaired, too_few(pairs), "cannot decide")
    design = _design(record, c)
    effect = c.design_effect
    rho = intraclass_of(effect, design.per_template) if effect is not None else 0.0
    k = settled.family_size
    return PairedTest(
        pairs=pairs,
        unpaired=unpaired,
        verdict=settled.decision.text,
        mark=settled.decision.mark,
        templates=c.templates,
        delta_f1_pp=c.delta_f1_pp,
        ci95=c.primary.interval(0.95),
        family_size=k,
        confidence=settled.confidence,
        ci=settled.interval,
        ci95_these_prompts=c.ci95_these_prompts_pp,
        design_effect=effect,
        p_value=c.primary.flip_p,
        p_value_adjusted=settled.p_adjusted,
        mcnemar_p_value=c.mcnemar_p,
        only_baseline_right=c.only_baseline_right,
        only_run_right=c.only_run_right,
        intensity_delta=c.intensity_delta,
        intensity_p_value=c.wilcoxon_p,
        min_detectable_f1_pp=settled.min_detectable_pp,
        templates_for_5pp=templates_for(DETECT_PP, c.primary.se_pp, design, rho, k),
        samples_per_prompt_for_5pp=samples_per_prompt_for(
            DETECT_PP, c.primary.se_pp, design, rho, k
        ),
        latency_ratio=latency[0] if latency else None,
        latency_ratio_ci95=latency[1] if latency else None,
    )


def paired_tests(
    records: Sequence[RunRecord],
    base_of: Mapping[str, RunRecord],
    margin_pp: float | None = None,
    engine_effects: Sequence[tuple[RunRecord, RunRecord]] = (),
) -> tuple[dict[str, PairedTest], dict[str, PairedTest]]:
    """Each succeeded run that is not its own baseline, against its baseline run (`base_of`, by
    run id), and each engine effect (reference, run): all of them one family. Returns the tests
    by run id: the baseline comparisons', then the engine effects'."""
    pairs: dict[tuple[str, str], tuple[RunRecord, RunRecord]] = {}
    for record in records:
        base = base_of.get(record.run_id)
        if record.state == RunState.SUCCEEDED and base is not None and base is not record:
            pairs[("baseline", record.run_id)] = (base, record)
    for reference, record in engine_effects:
        pairs[("engine", record.run_id)] = (reference, record)
    measured = {key: _pair(base, record) for key, (base, record) in pairs.items()}
    settled = settle_family(
        {f"{kind}:{run}": c for (kind, run), (*_, c) in measured.items()}, margin_pp
    )
    tests: dict[str, dict[str, PairedTest]] = {"baseline": {}, "engine": {}}
    for (kind, run_id), (count, unpaired, c) in measured.items():
        base, record = pairs[(kind, run_id)]
        tests[kind][run_id] = paired_test(
            record, count, unpaired, c, settled.get(f"{kind}:{run_id}"), latency_ratio(base, record)
        )
    return tests["baseline"], tests["engine"]


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
    with it by sample and settled as comparisons are, within the family of the tests made."""
    by_id = {r.run_id: r for r in records if r.state == RunState.SUCCEEDED and r.result is not None}
    best = by_id.get(best_id or "")
    if best is None:
        return ()
    tested: dict[str, PairedComparison | None] = {
        run_id: _pair(best, record)[2] for run_id, record in by_id.items() if run_id != best_id
    }
    worse = {run_id for run_id, t in settle_family(tested).items() if t.decision.mark == "worse"}
    return tuple(r.run_id for r in records if r.run_id in by_id and r.run_id not in worse)
