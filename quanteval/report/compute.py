"""The report from the runs' records: pure, plain data in, plain data out."""

from collections.abc import Mapping, Sequence
from dataclasses import replace

from quanteval.api.states import RunState
from quanteval.comparison import (
    Comparison,
    RunOutcome,
    Terms,
    best_run,
    compare,
    compare_pair,
    like_groups,
    outcome_of,
    peak_cause_note,
)
from quanteval.engines import DEFAULT_ENGINES, Engine, baseline_run, engine_effect_pairs
from quanteval.fidelity import FidelityFigures
from quanteval.precisions import BYTES_PER_PARAMETER, PRECISION_ORDER, Precision
from quanteval.report.claim import ClaimRun, check_claim
from quanteval.report.data import RunRecord
from quanteval.report.drift import intensity_drift, noise_floor, pair_by_sample, rouge_means
from quanteval.report.pareto import Point, pareto_front
from quanteval.report.ratings import rating_drift
from quanteval.report.replicates import replicate_figures, replicate_groups
from quanteval.report.samples import DEFAULT_SAMPLES, sample_rows
from quanteval.report.schema import (
    BaselineComparison,
    EngineEffect,
    EvaluationInfo,
    NoiseFloor,
    PairedTest,
    Report,
    RunReport,
)
from quanteval.report.study import study_claims
from quanteval.report.uncertainty import (
    fidelity_against,
    not_worse_than_best,
    paired_tests,
    quality_intervals,
)
from quanteval.textstats import distinct_n


def run_outcome(record: RunRecord) -> RunOutcome:
    """The record as quanteval.comparison's outcome (the shared comparison's input)."""
    if record.result is None:
        return RunOutcome(
            record.run_id, record.model, record.precision, record.state, reason=record.reason,
            engine=record.engine,
        )  # fmt: skip
    return outcome_of(record.result, record.state, record.reason)


def order_runs(records: Sequence[RunRecord]) -> list[RunRecord]:
    """By model (in order of first appearance), then precision, highest first, then engine."""
    models = list(dict.fromkeys(r.model for r in records))
    engines = list(Engine)
    return sorted(
        records,
        key=lambda r: (
            models.index(r.model),
            PRECISION_ORDER.index(r.precision),
            engines.index(r.engine),
        ),
    )


def model_baselines(records: Sequence[RunRecord]) -> dict[str, Precision]:
    """Each model's baseline precision as its results record it (models with none: absent)."""
    baselines: dict[str, Precision] = {}
    for record in records:
        if record.result is not None:
            baselines.setdefault(record.model, record.result.baseline)
    return baselines


def baseline_runs(
    records: Sequence[RunRecord], baselines: dict[str, Precision]
) -> dict[tuple[str, Engine], RunRecord]:
    """Each model's succeeded baseline run on each engine (models whose baseline run failed,
    and models compared with another's: absent)."""
    return {
        (r.model, r.engine): r
        for r in records
        if r.state == RunState.SUCCEEDED
        and baselines.get(r.model) == r.precision
        and r.compared_model == r.model
    }


def base_of_runs(
    records: Sequence[RunRecord],
    bases: dict[tuple[str, Engine], RunRecord],
    baselines: dict[str, Precision],
) -> dict[str, RunRecord]:
    """Each run's baseline run, by run id: its model's (or baselineModel's) on its own engine,
    or the default engine's where its own runs no baseline (quanteval.engines.baseline_engines)."""
    found: dict[str, RunRecord] = {}
    for r in records:
        baseline = baselines.get(r.compared_model)
        base = baseline_run(bases, r.compared_model, r.engine, baseline) if baseline else None
        if base is not None:
            found[r.run_id] = base
    return found


def effect_pairs(
    bases: dict[tuple[str, Engine], RunRecord],
) -> list[tuple[RunRecord, RunRecord]]:
    """(the default engine's baseline run, a named engine's) for each model that has both."""
    return [(bases[reference], bases[run]) for run, reference in engine_effect_pairs(bases)]


def _comparisons(
    records: Sequence[RunRecord], baselines: dict[str, Precision]
) -> dict[str, Comparison]:
    rows: dict[str, Comparison] = {}
    for model, baseline in baselines.items():
        outcomes = [run_outcome(r) for r in records if r.compared_model == model]
        rows.update({row.outcome.run_id: row for row in compare(outcomes, baseline)})
    return rows


def against_baseline(
    record: RunRecord,
    base: RunRecord | None,
    comparison: Comparison | None,
    paired: PairedTest | None = None,
    floors: dict[str, NoiseFloor] | None = None,
) -> BaselineComparison | None:
    """The run against its model's (or its baselineModel's) baseline run, with the baseline's
    A/A floor (`floors`, by baseline run id) beside ROUGE and drift; None unless both
    succeeded."""
    if record.state != RunState.SUCCEEDED or base is None or comparison is None:
        return None
    pairs = pair_by_sample(base.generations, record.generations)
    rouge = rouge_means(pairs)
    fidelity = fidelity_against(base, record) if base.run_id != record.run_id else None
    return BaselineComparison(
        baseline_run_id=base.run_id,
        weights_saving_pct=comparison.weights_saving_pct,
        memory_saving_pct=comparison.memory_saving_pct,
        f1_delta_pp=comparison.f1_delta_pp,
        time_ratio=comparison.time_ratio,
        matched_samples=len(pairs),
        rouge1=rouge.rouge1 if rouge else None,
        rouge2=rouge.rouge2 if rouge else None,
        rouge_l=rouge.rouge_l if rouge else None,
        intensity_drift=intensity_drift(pairs),
        dollar_ratio=comparison.dollar_ratio,
        paired=paired,
        fidelity=fidelity if isinstance(fidelity, FidelityFigures) else None,
        fidelity_unavailable=fidelity if isinstance(fidelity, str) else None,
        rating_drift=(
            rating_drift(base.ratings, record.ratings) if base.run_id != record.run_id else None
        ),
        unlike=comparison.unlike,
        noise_floor=(floors or {}).get(base.run_id),
    )


def run_report(
    record: RunRecord,
    baseline: Precision | None,
    vs_baseline: BaselineComparison | None,
    on_front: bool,
    comparison: Comparison | None = None,
) -> RunReport:
    """The run's row: its own figures (succeeded runs only) and its comparison."""
    row = RunReport(
        run_id=record.run_id,
        model=record.model,
        precision=record.precision,
        state=record.state,
        reason=record.reason,
        baseline=baseline,
        is_baseline=record.precision == baseline and record.compared_model == record.model,
        samples=len(record.generations),
        engine=record.engine,
    )
    if record.result is None or record.state != RunState.SUCCEEDED:
        return row
    m = record.result.metrics
    texts = [g.text for g in record.generations]
    peak_note = peak_cause_note(comparison) if comparison else None
    quantized = record.result.checkpoint_quantization
    return replace(
        row,
        f1_macro=m.f1_macro,
        accuracy=m.accuracy,
        intensity=m.intensity,
        distinct1=distinct_n(texts, 1) if texts else m.distinct1,
        distinct2=distinct_n(texts, 2) if texts else m.distinct2,
        weights_bytes=m.weights_bytes,
        peak_memory_bytes=m.peak_memory_bytes,
        generation_seconds=m.generation_seconds,
        tokens_per_second=m.tokens_per_second,
        ttft_ms=m.ttft_p50_ms,
        tpot_ms=m.tpot_p50_ms,
        gpu_seconds=m.gpu_seconds,
        dollars=m.dollars,
        per_emotion_f1={e: s.f1 for e, s in record.result.per_emotion.items()},
        intervals=quality_intervals(record),
        vs_baseline=vs_baseline,
        intensity_task=record.result.intensity_task,
        on_pareto_front=on_front,
        warnings=(*record.result.warnings, *filter(None, [peak_note])),
        checkpoint=quantized.describe() if quantized else "",
    )


def engine_effect(
    reference: RunRecord,
    record: RunRecord,
    paired: PairedTest | None,
    floors: dict[str, NoiseFloor],
) -> EngineEffect | None:
    """The named engine's baseline run against the default engine's."""
    row = compare_pair(run_outcome(record), run_outcome(reference), is_baseline=False)
    vs = against_baseline(record, reference, row, paired, floors)
    return EngineEffect(record.run_id, record.engine, vs) if vs is not None else None


def model_parameters(records: Sequence[RunRecord]) -> dict[str, int]:
    """Each model's parameters, from its succeeded run at the most bytes a weight (its weights
    bytes over that: exact at fp32/bf16/fp16, an estimate from a quantized run alone; native
    checkpoints, whose bytes a weight only they know, are left out)."""
    best: dict[str, RunRecord] = {}
    for r in records:
        if r.state != RunState.SUCCEEDED or r.result is None:
            continue
        if r.precision not in BYTES_PER_PARAMETER:
            continue
        known = best.get(r.model)
        if known is None or BYTES_PER_PARAMETER[r.precision] > BYTES_PER_PARAMETER[known.precision]:
            best[r.model] = r
    return {
        m: round(r.result.metrics.weights_bytes / BYTES_PER_PARAMETER[r.precision])
        for m, r in best.items()
        if r.result is not None
    }


def dollar_front(
    runs: Sequence[RunReport], terms: Mapping[str, Terms] | None = None
) -> tuple[str, ...] | None:
    """The Pareto front of F1 against dollars per run, among the runs whose dollars compare with
    theirs (`terms` by run id; the same device: quanteval.comparison.like_groups): a front per
    device. None unless every succeeded run is priced."""
    done = {r.run_id: r for r in runs if r.state == RunState.SUCCEEDED and r.f1_macro is not None}
    if not done or any(r.dollars is None for r in done.values()):
        return None
    known = terms or {}
    groups = like_groups({i: known.get(i, Terms()) for i in done}, time=True)
    return tuple(
        p.run_id
        for group in groups
        for p in pareto_front(
            [Point(i, done[i].f1_macro or 0.0, done[i].dollars or 0.0) for i in group]
        )
    )


def memory_front(succeeded: Sequence[ClaimRun]) -> list[str]:
    """The runs on the Pareto front of F1 against peak memory, among the runs whose memory is
    like for like with theirs (the same device, engine as it ran and KV budget:
    quanteval.comparison.like_groups): a front per kind."""
    by_id = {r.run_id: r for r in succeeded}
    groups = like_groups({r.run_id: r.terms for r in succeeded})
    return [
        p.run_id
        for group in groups
        for p in pareto_front([Point(i, by_id[i].f1, by_id[i].peak_memory_bytes) for i in group])
    ]


def _claim_runs(records: Sequence[RunRecord]) -> list[ClaimRun]:
    return [
        ClaimRun(
            r.run_id,
            r.model,
            r.precision,
            r.result.metrics.f1_macro,
            r.result.metrics.peak_memory_bytes,
            r.generations,
            tuple(r.result.per_emotion),
            r.engine,
            run_outcome(r).terms,
        )
        for r in records
        if r.state == RunState.SUCCEEDED and r.result is not None
    ]


def noise_floors(
    bases: dict[tuple[str, Engine], RunRecord], groups: Mapping[str, list[RunRecord]]
) -> dict[str, NoiseFloor]:
    """Each baseline run's A/A floor (quanteval.report.drift.noise_floor), by its run id."""
    floors = {}
    for base in bases.values():
        repeats = groups.get(base.run_id, [])[1:]
        repeat = next((r for r in repeats if r.state == RunState.SUCCEEDED), None)
        if (floor := noise_floor(base, repeat)) is not None:
            floors[base.run_id] = floor
    return floors


def compute_report(
    records: Sequence[RunRecord],
    *,
    source: str,
    generated_at: str,
    ignored: Sequence[str] = (),
    sample_count: int = DEFAULT_SAMPLES,
    equivalence_margin_pp: float | None = None,
) -> Report:
    """The report of an evaluation's records; a run's repeats (spec.replicates) give its
    run-to-run spread and A/A floor, and are compared with nothing themselves."""
    groups = replicate_groups(order_runs(records))
    runs = order_runs([r for r in records if r.replicate == 1])
    baselines = model_baselines(runs)
    bases = baseline_runs(runs, baselines)
    floors = noise_floors(bases, groups)
    base_of = base_of_runs(runs, bases, baselines)
    comparisons = _comparisons(runs, baselines)
    effects = effect_pairs(bases)
    paired, paired_effects = paired_tests(runs, base_of, equivalence_margin_pp, effects)
    succeeded = _claim_runs(runs)
    front = memory_front(succeeded)
    reports = tuple(
        run_report(
            r,
            baselines.get(r.model),
            against_baseline(
                r, base_of.get(r.run_id), comparisons.get(r.run_id), paired.get(r.run_id), floors
            ),
            r.run_id in front,
            comparisons.get(r.run_id),
        )
        for r in runs
    )
    models = list(dict.fromkeys(r.model for r in runs))
    parameters = model_parameters(runs)
    claim = check_claim([c for c in succeeded if c.engine in DEFAULT_ENGINES], parameters, models)
    best = best_run([run_outcome(r) for r in runs])
    results = [r.result for r in runs if r.result is not None]
    evaluation = (
        EvaluationInfo(
            results[0].evaluation.name,
            results[0].evaluation.namespace,
            results[0].evaluation.uid,
        )
        if results
        else None
    )
    emotions = tuple(dict.fromkeys(e for result in results for e in result.per_emotion))
    return Report(
        source=source,
        generated_at=generated_at,
        evaluation=evaluation,
        emotions=emotions,
        runs=reports,
        best_run=best.run_id if best else None,
        best_runs=not_worse_than_best(runs, best.run_id if best else None),
        pareto_front=tuple(front),
        pareto_front_dollars=dollar_front(reports, {c.run_id: c.terms for c in succeeded}),
        claim=claim,
        study_claims=study_claims(reports, groups, parameters),
        samples=tuple(row for m in models for row in sample_rows(m, runs, sample_count)),
        ignored=tuple(ignored),
        engine_effects=tuple(
            effect
            for reference, run in effects
            if (effect := engine_effect(reference, run, paired_effects.get(run.run_id), floors))
        ),
        replicates=replicate_figures(groups),
    )
