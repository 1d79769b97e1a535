"""The report as text: `report.csv` (one row per run) and `report.md` (table and claim check)."""

import csv
import io
from collections.abc import Callable, Collection, Iterable, Sequence

from quanteval.api.result import ClassifierReference, IntensityFigures
from quanteval.api.states import RunState
from quanteval.comparison import Unlike
from quanteval.fmt import (
    delta_cell,
    human_bytes,
    interval,
    memory_cell,
    num,
    percent,
    ratio_cell,
    signed,
    verdict_mark,
)
from quanteval.report.schema import BaselineComparison, PairedTest, Report, RunReport, Spread
from quanteval.report.study import MEMORY_NOTE

NO_COMPARISON = BaselineComparison("", None, None, None, None, 0, None, None, None, None)

CSV_COLUMNS = (
    "runId", "model", "precision", "state", "reason", "isBaseline", "f1Macro", "accuracy",
    "intensity", "distinct1", "distinct2", "weightsBytes", "peakMemoryBytes",
    "generationSeconds", "tokensPerSecond", "weightsSavingPct", "memorySavingPct", "f1DeltaPp",
    "timeRatio", "rouge1", "rouge2", "rougeL", "intensityDrift", "matchedSamples",
    "onParetoFront", "ttftP50Ms", "tpotP50Ms", "gpuSeconds", "dollars", "dollarRatio",
    "f1MacroCi95Low", "f1MacroCi95High", "accuracyCi95Low", "accuracyCi95High",
    "pairedSamples", "deltaF1Pp", "deltaF1Ci95Low", "deltaF1Ci95High", "pValue",
    "pValueAdjusted", "verdict", "minDetectableF1Pp", "samplesPerPromptFor5Pp",
    "meanKl", "meanKlCi95Low", "meanKlCi95High", "p99Kl", "top1AgreementPct", "perplexityRatio",
    "mark", "templates", "familySize", "confidence", "deltaF1CiLow", "deltaF1CiHigh",
    "deltaF1Ci95ThesePromptsLow", "deltaF1Ci95ThesePromptsHigh", "designEffect",
    "mcnemarPValue", "templatesFor5Pp", "engine", "memoryComparable", "timeComparable",
    "aaRouge1", "aaRouge2", "aaRougeL", "aaIntensityDrift",
)  # fmt: skip

TABLE_HEADERS = (
    "run", "state", "F1 [95% CI]", "accuracy", "intensity", "distinct-2", "weights", "peak memory",
    "gen s", "TTFT ms", "TPOT ms", "tokens/s", "$", "weights saving %", "memory saving %",
    "F1 Δ pp [CI at 1-0.05/k]", "verdict (Holm p)", "time ×", "$ ×",
    "ROUGE-1", "ROUGE-2", "ROUGE-L", "intensity drift", "Pareto",
)  # fmt: skip


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def csv_row(run: RunReport, emotions: tuple[str, ...]) -> list[object]:
    c = run.vs_baseline or NO_COMPARISON
    values: list[object] = [
        run.run_id, run.model, run.precision.value, run.state, run.reason, run.is_baseline,
        run.f1_macro, run.accuracy, run.intensity, run.distinct1, run.distinct2,
        run.weights_bytes, run.peak_memory_bytes, run.generation_seconds, run.tokens_per_second,
        c.weights_saving_pct, c.memory_saving_pct, c.f1_delta_pp,
        c.time_ratio, c.rouge1, c.rouge2, c.rouge_l,
        c.intensity_drift, c.matched_samples if run.vs_baseline else None, run.on_pareto_front,
        run.ttft_ms, run.tpot_ms, run.gpu_seconds, run.dollars, c.dollar_ratio,
    ]  # fmt: skip
    i, t = run.intervals, c.paired
    values += [
        *(i.f1_macro_ci95 if i else (None, None)), *(i.accuracy_ci95 if i else (None, None)),
        t.pairs if t else None, t.delta_f1_pp if t else None,
        *(t.ci95 if t and t.ci95 else (None, None)), t.p_value if t else None,
        t.p_value_adjusted if t else None, t.verdict if t else None,
        t.min_detectable_f1_pp if t else None, t.samples_per_prompt_for_5pp if t else None,
    ]  # fmt: skip
    f = c.fidelity
    values += [
        f.mean_kl, *f.mean_kl_ci95, f.p99_kl, f.top1_agreement_pct, f.perplexity_ratio,
    ] if f else [None] * 6  # fmt: skip
    values += [
        t.mark if t else None, t.templates if t else None, t.family_size if t else None,
        t.confidence if t else None, *(t.ci if t and t.ci else (None, None)),
        *(t.ci95_these_prompts if t and t.ci95_these_prompts else (None, None)),
        t.design_effect if t else None, t.mcnemar_p_value if t else None,
        t.templates_for_5pp if t else None,
    ]  # fmt: skip
    values += [run.engine.value]
    values += [c.memory_comparable, c.time_comparable] if run.vs_baseline else [None, None]
    a = c.noise_floor
    values += [a.rouge1, a.rouge2, a.rouge_l, a.intensity_drift] if a else [None] * 4
    values += [run.per_emotion_f1.get(e) for e in emotions]
    return [_csv_value(v) for v in values]


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(f"f1.{e}" for e in report.emotions)])
    for run in report.runs:
        writer.writerow(csv_row(run, report.emotions))
    return out.getvalue()


def table_cells(run: RunReport) -> list[str]:
    """One run's cells under TABLE_HEADERS (shared by the Markdown and the HTML table)."""
    c = run.vs_baseline or NO_COMPARISON
    f1_ci = run.intervals.f1_macro_ci95 if run.intervals else None
    floor = c.noise_floor if not run.is_baseline else None
    return [
        run.run_id
        + (f" ({run.checkpoint})" if run.checkpoint else "")
        + (" (baseline)" if run.is_baseline else ""),
        run.state,
        f"{num(run.f1_macro, '.3f')} {interval(f1_ci, '.3f')}".strip(),
        num(run.accuracy, ".3f"),
        num(run.intensity, ".1f"),
        num(run.distinct2, ".3f"),
        human_bytes(run.weights_bytes),
        human_bytes(run.peak_memory_bytes),
        num(run.generation_seconds, ".1f"),
        num(run.ttft_ms, ".0f"),
        num(run.tpot_ms, ".1f"),
        num(run.tokens_per_second, ".1f"),
        num(run.dollars, ".4f"),
        signed(c.weights_saving_pct, ".1f"),
        memory_cell(c.memory_saving_pct, c.memory_comparable),
        delta_cell(c.f1_delta_pp, c.paired),
        _verdict_cell(c),
        ratio_cell(c.time_ratio, c.time_comparable),
        ratio_cell(c.dollar_ratio, c.time_comparable),
        beside_floor(c.rouge1, floor.rouge1 if floor else None, ".3f"),
        beside_floor(c.rouge2, floor.rouge2 if floor else None, ".3f"),
        beside_floor(c.rouge_l, floor.rouge_l if floor else None, ".3f"),
        beside_floor(c.intensity_drift, floor.intensity_drift if floor else None, ".1f"),
        "★" if run.on_pareto_front else "",
    ]


def beside_floor(value: float | None, floor: float | None, fmt: str) -> str:
    """A figure with the baseline's A/A value beside it: "0.312 (A/A 0.298)"."""
    if value is None or floor is None:
        return num(value, fmt)
    return f"{num(value, fmt)} (A/A {num(floor, fmt)})"


def _verdict_cell(c: BaselineComparison) -> str:
    t = c.paired
    if t is None:
        return ""
    p = f" ({t.p_value_adjusted:.2f})" if t.p_value_adjusted is not None else ""
    return verdict_mark(t) + p


def advice(t: PairedTest) -> str:
    """What a 5-point change would need, from the measured template-level spread."""
    templates = f"{t.templates_for_5pp} templates" if t.templates_for_5pp else "more templates"
    if t.samples_per_prompt_for_5pp is None:
        return (
            f"5 points needs {templates} (no samplesPerPrompt reaches it with these "
            f"{t.templates}: the templates' own spread is the floor)"
        )
    return (
        f"5 points needs {templates} at this samplesPerPrompt, or samplesPerPrompt "
        f"{t.samples_per_prompt_for_5pp} with these {t.templates}"
    )


# The ‡ legend, by why two runs are not like for like (quanteval.comparison.Unlike).
NOT_LIKE_FOR_LIKE = {
    Unlike.ENGINE: "‡ on a memory %: the two ran on different engines, or KV-cache budgets, "
    "whose peak memory is not like for like (vLLM's is mostly the KV cache it reserves): read "
    "weights saving instead.",
    Unlike.DEVICE: "‡ on a memory %, time × or $ ×: the two computed on different devices (a CPU "
    "against a GPU: llama.cpp computes on the CPU), so each figure is another machine's; read "
    "F1 and weights saving only.",
}
KEPT_APART = (
    "Runs marked ‡ against each other are kept out of each other's Pareto front and out of the "
    "claim check."
)


def not_like_for_like(report: Report) -> str:
    """The ‡ legend: a sentence for each reason the report's comparisons have, then what it
    keeps apart; "" where every comparison is like for like."""
    comparisons = [r.vs_baseline for r in report.runs] + [e.vs for e in report.engine_effects]
    found = {c.unlike for c in comparisons if c is not None and c.unlike is not None}
    if not found:
        return ""
    return " ".join([*(NOT_LIKE_FOR_LIKE[why] for why in Unlike if why in found), KEPT_APART])


def verdict_line(run_id: str, vs: BaselineComparison) -> str | None:
    """One comparison in plain words: the verdict, its figures, and what would settle it."""
    t = vs.paired
    if t is None:
        return None
    head = f"- {run_id} against {vs.baseline_run_id}: **{t.verdict}**"
    if t.delta_f1_pp is None or t.ci is None or t.confidence is None:
        return f"{head} ({t.pairs} paired samples)."
    effect = f"design effect {t.design_effect:.2f}" if t.design_effect else "no design effect"
    return (
        f"{head}: macro-F1 {signed(t.delta_f1_pp, '.1f')} points over {t.pairs} paired "
        f"samples of {t.templates} templates"
        + (f" ({t.unpaired} unpaired left out)" if t.unpaired else "")
        + f". Prompts like these: {interval(t.ci, '.1f', sign=True)} at "
        f"{percent(t.confidence)} ({t.family_size} comparisons; 95%: "
        f"{interval(t.ci95, '.1f', sign=True)}); these prompts, new samples: 95% "
        f"{interval(t.ci95_these_prompts, '.1f', sign=True)} ({effect}). "
        f"Permutation test p {t.p_value:.3f}, Holm-adjusted {t.p_value_adjusted:.3f}; "
        f"accuracy (McNemar, secondary) p {t.mcnemar_p_value:.3f} "
        f"({t.only_baseline_right} samples only the baseline got right, "
        f"{t.only_run_right} only this run); intensity "
        f"{signed(t.intensity_delta, '.1f')} points (Wilcoxon p {t.intensity_p_value:.3f}). "
        f"This data detects a change of {t.min_detectable_f1_pp:.1f} points (80% power, "
        f"the family's test); {advice(t)}."
        + (
            f" Per-sample latency ×{t.latency_ratio:.2f} {interval(t.latency_ratio_ci95, '.2f')}."
            if t.latency_ratio is not None
            else ""
        )
    )


def verdict_lines(report: Report) -> list[str]:
    """Each comparison against a baseline in plain words."""
    return [
        line
        for run in report.runs
        if run.vs_baseline is not None
        and (line := verdict_line(run.run_id, run.vs_baseline)) is not None
    ]


ENGINE_EFFECT_INTRO = (
    "Each named engine's baseline-precision run against the default engine's run of the same "
    "model and precision: what the engine alone changes, in the same family of comparisons as "
    "the verdicts. Samples pair by prompt and seed, but the texts differ: two engines' logits "
    "differ in the last bits, and a near tie then picks another token, after which the texts "
    "part. Time and weights compare; peak memory does not (‡)."
)


def engine_effect_lines(report: Report) -> list[str]:
    """Each engine effect in plain words, with its time and weights against the default's."""
    lines = []
    for effect in report.engine_effects:
        vs = effect.vs
        memory = f"{signed(vs.memory_saving_pct, '.1f')}%" + ("" if vs.memory_comparable else " ‡")
        time = ratio_cell(vs.time_ratio, vs.time_comparable)
        kl = f", mean KL {vs.fidelity.mean_kl:.4f} nats/token" if vs.fidelity else ""
        figures = (
            f"   Generation time ×{time}, weights saving "
            f"{signed(vs.weights_saving_pct, '.1f')}%, peak memory saving {memory}{kl}, "
            f"ROUGE-L {num(vs.rouge_l, '.3f')} against the default's texts."
        )
        line = verdict_line(effect.run_id, vs) or f"- {effect.run_id} against {vs.baseline_run_id}"
        lines += [line, figures]
    return lines


FIDELITY_HEADERS = (
    "run", "against", "KL nats/token [95% CI]", "KL p99 [95% CI]", "top-1 agreement % [95% CI]",
    "perplexity × [95% CI]", "positions (sequences)", "kept mass",
)  # fmt: skip

FIDELITY_INTRO = (
    "Each run scores the same reference corpus by teacher forcing (the evaluation's prompts, "
    "each followed by a fixed affective sentence) and keeps each position's most likely tokens "
    "until they hold 99.9% of the probability, within 800,000 tokens a run (kept mass: what "
    "they held). "
    "Against the baseline: KL(baseline || run) per token (a lower bound: the exact KL over the "
    "tokens both kept plus one bin for the rest), its 99th percentile, how often the two most "
    "likely tokens agree, and the ratio of the corpus's perplexities; intervals resample the "
    "corpus's sequences (2,000 times)."
)


def fidelity_rows(report: Report) -> list[list[str]]:
    """One row per run with fidelity figures, under FIDELITY_HEADERS."""
    rows = []
    for run in report.runs:
        c = run.vs_baseline
        f = c.fidelity if c else None
        if c is None or f is None:
            continue
        rows.append([
            run.run_id, c.baseline_run_id,
            f"{f.mean_kl:.4f} {interval(f.mean_kl_ci95, '.4f')}",
            f"{f.p99_kl:.3f} {interval(f.p99_kl_ci95, '.3f')}",
            f"{f.top1_agreement_pct:.1f} {interval(f.top1_agreement_ci95, '.1f')}",
            f"{f.perplexity_ratio:.3f} {interval(f.perplexity_ratio_ci95, '.3f')}",
            f"{f.positions} ({f.sequences})",
            f"{100 * f.run_kept_mass:.2f}%",
        ])  # fmt: skip
    return rows


RATINGS_HEADERS = (
    "run", "texts", "parse failures", "rho vs level [95% CI]", "ratings/s", "against",
    "mean abs. Δ [95% CI]", "p95 abs. Δ", "moved > 5 points", "rank corr. [95% CI]",
    "Wilcoxon p",
)  # fmt: skip

RATINGS_INTRO = (
    "The intensity task: the model rated each text 0-100 (its answer read by the parse rule: "
    "no number, an echo of the scale, a range, a fraction or a number outside 0-100 is a parse "
    "failure, never a 0; with intensity.method expected, the mean of its own probabilities "
    "over 0-100, a parse failure where most of its mass is on no number). rho: Spearman's rank "
    "correlation of the ratings with the texts' intended levels. Against the baseline, paired "
    "by text (texts both rated): the mean and p95 absolute rating change, the share that moved "
    "by more than 5 points, the rank correlation with the baseline's ratings, and Wilcoxon's "
    "signed-rank test."
)


CALIBRATION_INTRO = (
    "The mean rating of the texts of each intended level (1 mild to 5 extreme), with its 95% "
    "bootstrap interval over the texts the model rated, and the classifier's mean (the "
    "emotion's probability x 100) on the same texts: ratings that carry the levels rise with "
    "them."
)


def _with_interval(value: str, ci: tuple[float, float] | None, fmt: str) -> str:
    return f"{value} {interval(ci, fmt)}".rstrip()


def ratings_rows(report: Report) -> list[list[str]]:
    """One row per run that did the intensity task, under RATINGS_HEADERS."""
    rows = []
    for run in report.runs:
        t = run.intensity_task
        if t is None:
            continue
        d = run.vs_baseline.rating_drift if run.vs_baseline else None
        rho = _with_interval(num(t.spearman_rho, "+.2f"), t.spearman_rho_ci95, "+.2f")
        if t.spearman_rho is None and t.spearman_rho_unavailable:
            rho = f"- ({t.spearman_rho_unavailable})"
        drift = ["", "", "", "", "", ""]
        if d is not None and run.vs_baseline is not None:
            rank = d.rank_correlation
            drift = [
                f"{run.vs_baseline.baseline_run_id} ({d.pairs} pairs, {d.unpaired} unpaired)",
                _with_interval(num(d.mean_abs_change, ".1f"), d.mean_abs_change_ci95, ".1f"),
                num(d.p95_abs_change, ".1f"),
                f"{num(d.moved_over_5_pct, '.1f')}%",
                _with_interval(num(rank, "+.2f"), d.rank_correlation_ci95, "+.2f"),
                num(d.wilcoxon_p, ".3f"),
            ]
        rows.append([
            run.run_id, str(t.texts), parse_failures_cell(t),
            rho, f"{t.ratings_per_second:.1f}", *drift,
        ])  # fmt: skip
    return rows


def parse_failures_cell(t: IntensityFigures) -> str:
    """Parse failures, their share, and how many of each reason: "12 (17.1%: no number 8, ...)"."""
    reasons = ", ".join(f"{why} {n}" for why, n in sorted(t.parse_failures_by_reason.items()))
    share = f"{100 * t.parse_failure_rate:.1f}%"
    return (
        f"{t.parse_failures} ({share}: {reasons})" if reasons else f"{t.parse_failures} ({share})"
    )


def _rank_verdict(run: IntensityFigures, reference: ClassifierReference) -> str:
    if run.spearman_rho is None or run.spearman_rho_ci95 is None:
        return "it gives no rank order"
    if reference.spearman_rho is None or reference.spearman_rho_ci95 is None:
        return "the classifier gives no rank order"
    low, high = run.spearman_rho_ci95
    if low > reference.spearman_rho_ci95[1]:
        return "it ranks intensities better than the classifier"
    if high < reference.spearman_rho_ci95[0]:
        return "it ranks intensities worse than the classifier"
    return "not settled by this data (the intervals overlap)"


def same_texts_text(t: IntensityFigures) -> str | None:
    """The model's rank order against the classifier's on the same texts, settled by the
    interval of the difference (clusters: situations); None in results from before it."""
    a = t.same_texts
    if a is None:
        return None
    if isinstance(a, str):
        return f"on the same texts, no comparison ({a})"
    low, high = a.difference_ci95
    verdict = (
        "it ranks intensities better than the classifier"
        if low > 0
        else "it ranks intensities worse than the classifier"
        if high < 0
        else "not settled by this data"
    )
    return (
        f"on the same {a.texts} texts ({a.situations} situations): rho {a.model_rho:+.2f} "
        f"against the classifier's {a.classifier_rho:+.2f}, difference {a.difference:+.2f} "
        f"[{low:+.2f}, {high:+.2f}]: {verdict}"
    )


def calibration_lines(report: Report) -> list[str]:
    """Each run's mean rating by intended level (the calibration plot's points), with the
    classifier's on the same texts."""
    lines = []
    for run in report.runs:
        t = run.intensity_task
        if t is None or not t.calibration:
            continue
        points = "; ".join(
            f"level {p.level}: {_with_interval(f'{p.mean:.1f}', p.mean_ci95, '.1f')}"
            + (f" (classifier {p.classifier_mean:.1f})" if p.classifier_mean is not None else "")
            for p in t.calibration
        )
        lines.append(f"- {run.run_id} ({t.method}): {points}")
    return lines


def nuance_lines(report: Report) -> list[str]:
    """The cost of nuance in plain words: each run's ratings against its classifier's."""
    lines = []
    for run in report.runs:
        t = run.intensity_task
        c = t.classifier if t else None
        if t is None or c is None:
            continue
        slower = c.ratings_per_second / t.ratings_per_second if t.ratings_per_second else None
        dearer = (
            f"${t.dollars_per_1k_ratings:.5f} against ${c.dollars_per_1k_ratings:.5f} per 1,000 "
            f"ratings ({t.dollars_per_1k_ratings / c.dollars_per_1k_ratings:.0f}x dearer)"
            if t.dollars_per_1k_ratings is not None and c.dollars_per_1k_ratings
            else "no price, so no dollars (seconds only)"
        )
        rho = num(t.spearman_rho, "+.2f") if t.spearman_rho is not None else "none"
        if t.joules_per_1k_ratings is not None:
            dearer += f"; {t.joules_per_1k_ratings:,.0f} J per 1,000 of its ratings"
        lines.append(
            f"- {run.run_id}: {t.ratings_per_second:.1f} ratings/s against the classifier's "
            f"{c.ratings_per_second:.1f}/s on {c.device} ({num(slower, '.0f')}x slower); {dearer}; "
            f"rank order against the intended levels: "
            + (
                same_texts_text(t)
                or f"rho {rho} against the classifier's "
                f"{_with_interval(num(c.spearman_rho, '+.2f'), c.spearman_rho_ci95, '+.2f')}: "
                f"{_rank_verdict(t, c)}"
            )
            + "."
        )
    return lines


def ratings_lines(report: Report) -> list[str]:
    rows = ratings_rows(report)
    if not rows:
        return []
    calibration = calibration_lines(report)
    return [
        "## Intensity ratings",
        "",
        RATINGS_INTRO,
        "",
        *_md_table(RATINGS_HEADERS, rows, ("run", "against")),
        "",
        "### The cost of nuance",
        "",
        *(nuance_lines(report) or ["No classifier reference."]),
        "",
        *(["### Calibration", "", CALIBRATION_INTRO, "", *calibration, ""] if calibration else []),
    ]


def fidelity_lines(report: Report) -> list[str]:
    rows = fidelity_rows(report)
    unavailable = [
        f"- {r.run_id}: {r.vs_baseline.fidelity_unavailable}"
        for r in report.runs
        if r.vs_baseline is not None and r.vs_baseline.fidelity_unavailable
    ]
    after = ["", *unavailable] if unavailable else []
    if not rows:
        return ["No fidelity figures.", *after]
    return _md_table(FIDELITY_HEADERS, rows, ("run", "against")) + after


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], left: Collection[str]
) -> list[str]:
    """A Markdown table: the `left` columns left-aligned, the rest (figures) right-aligned."""
    return [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" if h in left else "---:" for h in headers) + " |",
        *("| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows),
    ]


def markdown_table(report: Report) -> str:
    cells = (table_cells(run) for run in report.runs)
    return "\n".join(_md_table(TABLE_HEADERS, cells, ("run", "state")))


def claim_lines(report: Report) -> list[str]:
    claim = report.claim
    lines = [
        f"Claim: {claim.claim} ({claim.similar_memory}; the {claim.family_size} comparisons "
        "settled together, each by the template-level interval of the macro-F1 difference at "
        f"{percent(claim.confidence or 0.95)} (1 - 0.05/k, k = {claim.family_size}): above 0 "
        "supports, below 0 contradicts, across 0 is not settled by this data).",
        "",
        f"**Verdict: {claim.verdict}.**",
    ]
    if claim.comparisons:
        lines.append("")
    for c in claim.comparisons:
        delta = (
            f"ΔF1 {signed(c.delta_f1_pp, '.1f')} points {interval(c.ci, '.1f', sign=True)} over "
            f"{c.pairs} paired samples of {c.templates} templates"
            if c.delta_f1_pp is not None
            else f"{c.pairs} paired samples: too few to decide"
        )
        lines.append(
            f"- {c.larger_run_id} (F1 {c.larger_f1:.3f}, "
            f"{human_bytes(c.larger_peak_memory_bytes)}) vs {c.smaller_run_id} "
            f"(F1 {c.smaller_f1:.3f}, {human_bytes(c.smaller_peak_memory_bytes)}), "
            f"memory ×{c.memory_ratio:.2f}: {delta}: {c.outcome}"
        )
    if not claim.comparisons:
        lines += ["", "(Needs two models of different sizes, each with a succeeded run.)"]
    if claim.models_left_out:
        lines += [
            "",
            f"Left out (no succeeded run, so no size): {', '.join(claim.models_left_out)}",
        ]
    return lines


def study_lines(report: Report) -> list[str]:
    """The study's headline figures on this data, one line each, after what the memory line
    cannot say."""
    if not report.study_claims:
        return ["(Needs an int8 run and an fp32 baseline run of the same model.)"]
    return [
        MEMORY_NOTE,
        "",
        *(f"- {c.run_id}: {c.claim}: {c.measured}: **{c.outcome}**" for c in report.study_claims),
    ]


def _spread(spread: Spread | None, fmt: Callable[[float], str]) -> str:
    if spread is None:
        return "-"
    low, high = spread.ci95
    return f"{fmt(spread.mean)} [{fmt(low)}, {fmt(high)}]"


REPLICATE_HEADERS = ("run", "replicates", "succeeded", "gen s", "TPOT ms", "peak memory", "$")


def replicate_rows(report: Report) -> list[list[str]]:
    """Each run made more than once: the mean of each figure over its replicates, with the
    95% t interval of that mean (shared by the Markdown and the HTML table)."""
    return [
        [
            r.run_id,
            ", ".join(r.replicates),
            str(r.succeeded),
            _spread(r.generation_seconds, lambda v: f"{v:.1f}"),
            _spread(r.tpot_ms, lambda v: f"{v:.1f}"),
            _spread(r.peak_memory_bytes, lambda v: human_bytes(round(v))),
            _spread(r.dollars, lambda v: f"{v:.4f}"),
        ]
        for r in report.replicates
    ]


REPLICATES_INTRO = (
    "Each run made more than once (spec.replicates), each time with other seeds: the mean over "
    "its succeeded replicates with the 95% Student-t interval of that mean, run to run (the "
    "machine, the seeds, the allocator). Only the first replicate is compared with its baseline; "
    "the others say how far a time, memory or dollar figure moves between two runs of the same."
)


def replicate_section(report: Report) -> list[str]:
    if not report.replicates:
        return []
    table = _md_table(REPLICATE_HEADERS, replicate_rows(report), {"run", "replicates"})
    return ["## Run to run", "", REPLICATES_INTRO, "", *table, ""]


def notes(report: Report) -> list[str]:
    out = [
        f"- {r.run_id}: {r.state}" + (f" ({r.reason})" if r.reason else "")
        for r in report.runs
        if r.state != RunState.SUCCEEDED
    ]
    out += [f"- {r.run_id}: {warning}" for r in report.runs for warning in r.warnings]
    for model in dict.fromkeys(r.model for r in report.runs):
        if not any(r.vs_baseline for r in report.runs if r.model == model):
            out.append(f"- {model}: no succeeded baseline run, so no comparison against it")
    if report.ignored:
        out.append(f"- not runs, ignored: {', '.join(report.ignored)}")
    return out


def dollar_front_text(report: Report) -> str:
    if report.pareto_front_dollars is None:
        return ""
    return f" Against dollars: {', '.join(report.pareto_front_dollars) or 'none'}."


def best_line(report: Report) -> str:
    """The best run as the data supports it: every run not significantly worse than it."""
    if report.best_run is None:
        return "Best run: none."
    others = [r for r in report.best_runs if r != report.best_run]
    if not others:
        return f"Best run: {report.best_run} (highest macro-F1; every other run is worse)."
    return (
        f"Best runs: {', '.join(report.best_runs)}: none significantly worse than "
        f"{report.best_run}, the highest macro-F1 (each settled against it as the verdicts "
        "are, within the family of those comparisons)."
    )


VERDICT_INTRO = (
    "Each run against its model's baseline, sample by sample (same prompt, emotion, sample "
    "index and seed), with the prompt template as the unit of inference: the verdict holds for "
    "prompts like these, not only for the samples drawn. The interval is the leave-one-template-"
    "out jackknife with Student's t on templates - 1 degrees of freedom, shown at 1 - 0.05/k for "
    "the evaluation's k comparisons (Bonferroni); the test is a permutation test of the macro-F1 "
    "difference exchanging whole templates, Holm-adjusted across the k comparisons. Worse or "
    "better only when that interval excludes 0 and the test rejects; where only one does, the "
    "verdict says which. 'No detectable difference' says how large the difference could be; "
    "'equivalent' only within a margin set in spec.report.equivalenceMarginPp. The sample-level "
    "interval (these prompts, new samples: BCa bootstrap, 2,000 resamples) stands beside it; "
    "the design effect is how much sharing templates widened the variance. Below 10 paired "
    "samples, with one template, or with a family too large for the templates, it cannot decide."
)


def engine_effect_section(report: Report) -> list[str]:
    if not report.engine_effects:
        return []
    return ["## Engine effect", "", ENGINE_EFFECT_INTRO, "", *engine_effect_lines(report), ""]


def to_markdown(report: Report) -> str:
    front = ", ".join(report.pareto_front) or "none"
    legend = not_like_for_like(report)
    lines = [
        f"# QuantEval report: {report.title}",
        "",
        f"Source: `{report.source}`; generated {report.generated_at}.",
        "",
        "## Comparison",
        "",
        "Against each model's baseline precision: memory saving (peak), F1 change in percentage "
        "points, generation time ratio, mean ROUGE F-measure against the baseline's text of the "
        "same sample, and intensity drift (mean absolute change of the intended emotion's "
        "probability, in points of 0-100). ★: on the Pareto front of F1 against peak memory.",
        "",
        markdown_table(report),
        "",
        *([legend, ""] if legend else []),
        best_line(report),
        "",
        f"Pareto front (F1 against peak memory): {front}." + dollar_front_text(report),
        "",
        "## Verdict",
        "",
        VERDICT_INTRO,
        "",
        *(verdict_lines(report) or ["No comparison against a baseline."]),
        "",
        *engine_effect_section(report),
        *replicate_section(report),
        "## Fidelity to the baseline",
        "",
        FIDELITY_INTRO,
        "",
        *fidelity_lines(report),
        "",
        *ratings_lines(report),
        "## Claim check",
        "",
        *claim_lines(report),
        "",
        "## The study's figures on this data",
        "",
        *study_lines(report),
    ]
    extra = notes(report)
    if extra:
        lines += ["", "## Notes", "", *extra]
    return "\n".join(lines) + "\n"
