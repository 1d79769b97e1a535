"""The comparison table printed at the end of a local run."""

from collections.abc import Iterable, Mapping
from typing import Protocol

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from quanteval.api.states import RunState
from quanteval.comparison import Comparison, peak_cause_note
from quanteval.engines import Engine
from quanteval.fmt import (
    PairedTest,
    delta_cell,
    human_bytes,
    memory_cell,
    num,
    percent,
    ratio_cell,
    signed,
    verdict_mark,
)


class Fidelity(Protocol):
    """What the table shows of a fidelity comparison (quanteval.report.schema)."""

    @property
    def mean_kl(self) -> float: ...

    @property
    def top1_agreement_pct(self) -> float: ...


class RatingDrift(Protocol):
    """What the JSON carries of the ratings' drift (quanteval.report.ratings.RatingDrift)."""

    @property
    def mean_abs_change(self) -> float | None: ...

    @property
    def moved_over_5_pct(self) -> float | None: ...


class AgainstBaseline(Protocol):
    """A run's comparison in the report (quanteval.report.schema.BaselineComparison)."""

    @property
    def paired(self) -> PairedTest | None: ...

    @property
    def fidelity(self) -> Fidelity | None: ...

    @property
    def rating_drift(self) -> RatingDrift | None: ...


DECISION_HEADERS = (
    "precision", "F1 Δ pp\n[CI, 1-0.05/k]", "verdict", "weights\nsaving %", "memory\nsaving %",
    "time ×", "$ ×", "KL\nnats",
)  # fmt: skip


def decision_tables(
    rows: list[Comparison],
    title: str = "QuantEval results",
    against: Mapping[str, AgainstBaseline] | None = None,
) -> Group:
    """What decides a precision, one table per model (titled with it), within 100 columns: ΔF1
    with the interval its verdict is read from, the verdict, the savings and the cost ratios."""
    against = against or {}
    tables: list[Table] = []
    for model in dict.fromkeys(row.outcome.model for row in rows):
        table = Table(
            title=model,
            box=box.SIMPLE_HEAD,
            title_justify="left",
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for header in DECISION_HEADERS:
            left = header in ("precision", "verdict")
            table.add_column(header, justify="left" if left else "right", no_wrap=True)
        for row in (r for r in rows if r.outcome.model == model):
            o = row.outcome
            report = against.get(o.run_id)
            test = report.paired if report else None
            fidelity = report.fidelity if report else None
            done = o.state == RunState.SUCCEEDED
            table.add_row(
                o.precision.value
                + (f" {o.engine}" if o.engine != Engine.AUTO else "")
                + (" (baseline)" if row.is_baseline else ""),
                delta_cell(row.f1_delta_pp, test) if done and not row.is_baseline else "",
                verdict_mark(test) if done else o.state,
                signed(row.weights_saving_pct, ".1f"),
                memory_cell(row.memory_saving_pct, row.memory_comparable),
                ratio_cell(row.time_ratio, row.time_comparable),
                ratio_cell(row.dollar_ratio, row.time_comparable),
                num(fidelity.mean_kl if fidelity else None, ".4f"),
            )
        tables.append(table)
    return Group(Text(title, style="bold"), *tables)


def comparison_table(
    rows: list[Comparison],
    title: str = "QuantEval results",
    against: Mapping[str, AgainstBaseline] | None = None,
) -> Table:
    """Every figure of the runs (`quanteval run --wide`); with `against` (the report's
    comparisons, by run id) ΔF1 carries its paired interval and verdict, beside the fidelity
    figures."""
    against = against or {}
    table = Table(title=title)
    headers = [
        "run", "state", "F1 macro", "accuracy", "intensity", "weights", "load peak", "peak memory",
        "load s", "gen s", "TTFT ms", "TPOT ms", "tokens/s", "J/token", "GPU s", "$",
        "weights saving %", "memory saving %",
        "F1 Δ pp [CI at 1-0.05/k]", "verdict", "KL nats", "top-1 %", "time ×", "$ ×",
    ]  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header in ("run", "state") else "right")
    for row in rows:
        o = row.outcome
        report = against.get(o.run_id)
        test = report.paired if report else None
        fidelity = report.fidelity if report else None
        baseline = " (baseline)" if row.is_baseline else ""
        table.add_row(
            o.run_id + baseline,
            o.state,
            num(o.f1_macro, ".3f"),
            num(o.accuracy, ".3f"),
            num(o.intensity, ".1f"),
            human_bytes(o.weights_bytes),
            human_bytes(o.load_peak_memory_bytes),
            human_bytes(o.peak_memory_bytes),
            num(o.load_seconds, ".1f"),
            num(o.generation_seconds, ".1f"),
            num(o.ttft_ms, ".0f"),
            num(o.tpot_ms, ".1f"),
            num(o.tokens_per_second, ".1f"),
            num(o.joules_per_token, ".3f"),
            num(o.gpu_seconds, ".0f"),
            num(o.dollars, ".4f"),
            signed(row.weights_saving_pct, ".1f"),
            memory_cell(row.memory_saving_pct, row.memory_comparable),
            delta_cell(row.f1_delta_pp, test),
            verdict_mark(test),
            num(fidelity.mean_kl if fidelity else None, ".4f"),
            num(fidelity.top1_agreement_pct if fidelity else None, ".1f"),
            ratio_cell(row.time_ratio, row.time_comparable),
            ratio_cell(row.dollar_ratio, row.time_comparable),
        )
    return table


def paired_note(against: Iterable[AgainstBaseline]) -> str:
    """How the table's ΔF1 interval and verdict were made: the family, the templates, the
    measured design effects."""
    tests = [a.paired for a in against if a.paired is not None and a.paired.confidence]
    if not tests:
        return "F1 Δ: unpaired (no paired comparison with 10 samples and 2 templates or more)"
    first = tests[0]
    effects = sorted(t.design_effect for t in tests if t.design_effect is not None)
    spread = (
        f"design effect {effects[0]:.2f}"
        + (f" to {effects[-1]:.2f}" if len(effects) > 1 else "")
        + " (how much sharing templates widened the variance)"
        if effects
        else "no design effect measured"
    )
    return (
        "F1 Δ: paired over the samples both runs generated, the prompt template as the unit "
        f"(prompts like these): interval at {percent(first.confidence or 0.95)} = 1-0.05/k for "
        f"k={first.family_size} comparisons of {first.templates} templates (leave-one-template-"
        "out jackknife, t on templates-1 df); verdict: worse/better only where that interval "
        "excludes 0 and the template permutation test (Holm-adjusted) rejects; "
        f"{spread}; the sample-level 95% interval (these prompts, new samples) is in report.md"
    )


def energy_notes(rows: list[Comparison]) -> list[str]:
    """Why runs have no J/token figure, once per reason."""
    reasons = dict.fromkeys(r.outcome.energy_unavailable for r in rows)
    return [f"energy not measured: {reason}" for reason in reasons if reason]


def memory_notes(rows: list[Comparison]) -> list[str]:
    """Runs whose peak is above the baseline's, with the allocator's measured share."""
    notes = ((r.outcome.run_id, peak_cause_note(r)) for r in rows)
    return [f"{run_id}: {note}" for run_id, note in notes if note]


def comparison_json(
    rows: list[Comparison], against: Mapping[str, AgainstBaseline] | None = None
) -> list[dict[str, object]]:
    """The table's rows as plain data (`quanteval run --output json`), unrounded, null where
    unknown; the paired verdict and fidelity where the report has them."""
    out: list[dict[str, object]] = []
    for row in rows:
        o = row.outcome
        report = (against or {}).get(o.run_id)
        test = report.paired if report else None
        fidelity = report.fidelity if report else None
        drift = report.rating_drift if report else None
        out.append({
            "runId": o.run_id, "model": o.model, "precision": o.precision.value,
            "state": o.state, "reason": o.reason or None, "isBaseline": row.is_baseline,
            "f1Macro": o.f1_macro, "accuracy": o.accuracy, "intensity": o.intensity,
            "weightsBytes": o.weights_bytes, "loadPeakMemoryBytes": o.load_peak_memory_bytes,
            "peakMemoryBytes": o.peak_memory_bytes, "loadSeconds": o.load_seconds,
            "generationSeconds": o.generation_seconds, "ttftMs": o.ttft_ms, "tpotMs": o.tpot_ms,
            "tokensPerSecond": o.tokens_per_second, "joulesPerToken": o.joules_per_token,
            "gpuSeconds": o.gpu_seconds, "dollars": o.dollars,
            "weightsSavingPct": row.weights_saving_pct, "memorySavingPct": row.memory_saving_pct,
            "memoryComparable": row.memory_comparable, "timeComparable": row.time_comparable,
            "engine": o.engine.value,
            "f1DeltaPp": test.delta_f1_pp if test and test.delta_f1_pp is not None
            else row.f1_delta_pp,
            "f1DeltaCi95": list(test.ci95) if test and test.ci95 else None,
            "f1DeltaCi": list(test.ci) if test and test.ci else None,
            "confidence": test.confidence if test else None,
            "familySize": test.family_size if test else None,
            "templates": test.templates if test else None,
            "f1DeltaCi95ThesePrompts": list(test.ci95_these_prompts)
            if test and test.ci95_these_prompts else None,
            "designEffect": test.design_effect if test else None,
            "verdict": test.verdict if test else None,
            "mark": test.mark if test else None,
            "meanKl": fidelity.mean_kl if fidelity else None,
            "top1AgreementPct": fidelity.top1_agreement_pct if fidelity else None,
            "timeRatio": row.time_ratio, "dollarRatio": row.dollar_ratio,
            "ratingParseFailureRate": o.rating_parse_failure_rate,
            "ratingSpearmanRho": o.rating_spearman_rho, "ratingsPerSecond": o.ratings_per_second,
            "dollarsPer1kRatings": o.dollars_per_1k_ratings,
            "ratingMeanAbsChange": drift.mean_abs_change if drift else None,
            "ratingMovedOver5Pct": drift.moved_over_5_pct if drift else None,
        })  # fmt: skip
    return out
