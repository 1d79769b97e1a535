"""The study's own headline figures (arXiv 2501.19317), checked on this evaluation's data.

For each model with an int8 run compared with an fp32 run (the study's 8 and 32 bits):
- memory, "8 bit saved 76% memory": the study names no quantity, so each one measured is given
  with its distance from 76 (weights; the allocator's or the process's peak; NVML's device peak);
- time, "roughly doubled inference time": per-token decode time (TPOT p50), int8 over fp32, at
  the batch size and on the device the runs used (the study: batch 1, a GPU). One run of each is
  one measurement of a machine's speed, so a verdict (the ratio's interval against 1.5-2.5x)
  needs repeats (spec.replicates >= 2); without them the ratio is "measured once";
- quality, "cost large models up to 10 F1 points, helped small ones": the paired ΔF1 interval
  against the study's direction for the model's size among this evaluation's models (larger:
  -10..0, smaller: 0..+10); a model without a size rank (one model, or the median one) is
  checked against -10..+10 only.
"""

from collections.abc import Mapping, Sequence
from statistics import median
from typing import Final

from quanteval.fmt import interval
from quanteval.precisions import Precision
from quanteval.report.claim import CONTRADICTED, SUPPORTED, UNSETTLED
from quanteval.report.data import RunRecord
from quanteval.report.replicates import replicate_values
from quanteval.report.schema import RunReport, StudyClaim
from quanteval.stats import repeat_ratio

STUDY_MEMORY_SAVING_PCT: Final = 76.0
ROUGHLY_DOUBLE: Final = (1.5, 2.5)
WITHIN_POINTS: Final = 10.0
MEASURED: Final = "measured (the study names no quantity)"
MEASURED_ONCE: Final = "measured once (spec.replicates: 2 or more for a verdict)"
SCORED_TEXT: Final = {
    "continuation": "scored: the continuation (the study scored prompt + continuation)",
    "promptAndContinuation": "scored: prompt + continuation, as the study did",
}
# Said once beside the lines (quanteval.report.tables.study_lines).
MEMORY_NOTE: Final = (
    "The study does not say which memory its 76% is. LLM.int8's weights alone save 74.0%, "
    "74.4% and 74.8% for Llama-2 7B, 13B and 70B by arithmetic (int8 linear layers, fp16 "
    "embeddings and norms), so weights alone never reach 76%; each quantity measured is given "
    "with its distance from 76 points."
)


def _against(ci: tuple[float, float] | None, low: float, high: float) -> str:
    if ci is None:
        return UNSETTLED
    if low <= ci[0] and ci[1] <= high:
        return SUPPORTED
    if ci[1] < low or ci[0] > high:
        return CONTRADICTED
    return UNSETTLED


def _from_76(label: str, saving: float | None) -> str | None:
    if saving is None:
        return None
    return f"{label} saving {saving:.1f}% ({saving - STUDY_MEMORY_SAVING_PCT:+.1f} points from 76)"


def _saving(run: int | None, base: int | None) -> float | None:
    return 100.0 * (1 - run / base) if run is not None and base else None


def _nvml_peak(record: RunRecord | None) -> int | None:
    figure = (
        record.result.memory.get("generationNvmlPeakUsedBytes")
        if record and record.result
        else None
    )
    return figure if isinstance(figure, int) else None


def memory_claim(run: RunReport, record: RunRecord | None, base: RunRecord | None) -> StudyClaim:
    """Each memory quantity measured, with its distance from the study's 76%."""
    c = run.vs_baseline
    cuda = record is not None and record.result is not None and record.result.device == "cuda"
    peak = "allocator peak (torch max allocated)" if cuda else "process peak (RSS)"
    parts = [
        _from_76("weights", c.weights_saving_pct if c else None),
        _from_76(peak, c.memory_saving_pct if c else None),
        _from_76("NVML device peak", _saving(_nvml_peak(record), _nvml_peak(base))),
    ]
    measured = "; ".join(p for p in parts if p) or "not measured"
    if c is not None and not c.memory_comparable:
        measured += " (‡ not like for like: other terms or device)"
    return StudyClaim(run.run_id, "8 bit saves 76% of the memory", measured, MEASURED)


def _where(record: RunRecord | None) -> str:
    """The batch size and device a run's times were measured at."""
    if record is None or record.result is None:
        return "at an unknown batch on an unknown device"
    result = record.result
    gpus = result.environment.get("gpus")
    device = gpus[0] if result.device == "cuda" and isinstance(gpus, list) and gpus else "a CPU"
    return f"at batch {result.batch_size} on {device}"


def time_claim(
    run: RunReport, base_run: RunReport | None, int8: list[float], fp32: list[float], where: str
) -> StudyClaim:
    """Per-token decode time, int8 over fp32: a verdict from repeats, else measured once."""
    claim = "8 bit roughly doubles inference time (read: TPOT 1.5-2.5x; the study: batch 1, GPU)"
    if len(int8) >= 2 and len(fp32) >= 2:
        ratio, ci = repeat_ratio(int8, fp32)
        measured = (
            f"TPOT p50 x{ratio:.2f} {interval(ci, '.2f')} over {len(int8)} and {len(fp32)} "
            f"runs {where}"
        )
        return StudyClaim(run.run_id, claim, measured, _against(ci, *ROUGHLY_DOUBLE), ci)
    if run.tpot_ms is None or base_run is None or not base_run.tpot_ms:
        return StudyClaim(run.run_id, claim, "no per-token decode time", UNSETTLED)
    measured = f"measured once: {run.tpot_ms / base_run.tpot_ms:.2f}x TPOT p50 {where}"
    return StudyClaim(run.run_id, claim, measured, MEASURED_ONCE)


def size_ranks(models: Sequence[str], parameters: dict[str, int]) -> dict[str, str]:
    """ "larger" or "smaller" for each model of known size above or below the median of those
    compared (none with fewer than two)."""
    sized = {m: parameters[m] for m in models if m in parameters}
    if len(sized) < 2:
        return {}
    middle = median(sized.values())
    return {m: "larger" if p > middle else "smaller" for m, p in sized.items() if p != middle}


def quality_claim(run: RunReport, rank: str | None, scored: str = "continuation") -> StudyClaim:
    """ΔF1 against the study's direction for the model's size rank; `scored`: the text the
    classifier read (result.json scoredText)."""
    t = run.vs_baseline.paired if run.vs_baseline else None
    ci = t.ci95 if t else None
    if rank == "larger":
        claim, low, high = "8 bit costs a larger model up to 10 F1 points", -WITHIN_POINTS, 0.0
    elif rank == "smaller":
        claim, low, high = "8 bit helps a smaller model, by up to 10 F1 points", 0.0, WITHIN_POINTS
    else:
        claim = "8 bit moves macro-F1 by at most 10 points (no size rank: one model, or the median)"
        low, high = -WITHIN_POINTS, WITHIN_POINTS
    delta = t.delta_f1_pp if t else None
    measured = (
        f"ΔF1 {delta:+.1f} points {interval(ci, '.1f', True)}; "
        f"{SCORED_TEXT.get(scored, f'scored: {scored}')}"
        if delta is not None
        else "-"
    )
    return StudyClaim(run.run_id, claim, measured, _against(ci, low, high), ci)


def study_claims(
    runs: Sequence[RunReport],
    groups: Mapping[str, Sequence[RunRecord]],
    parameters: dict[str, int],
) -> tuple[StudyClaim, ...]:
    """One memory, one time and one quality check per model with int8 against fp32. `groups`:
    each run's records, its repeats (spec.replicates) after it (replicates.replicate_groups);
    `parameters` each model's size."""
    by_id = {r.run_id: r for r in runs}
    compared = [
        run
        for run in runs
        if run.precision == Precision.INT8
        and run.vs_baseline is not None
        and run.baseline == Precision.FP32
    ]
    ranks = size_ranks(list(dict.fromkeys(r.model for r in compared)), parameters)
    record_of = {run: group[0] for run, group in groups.items()}

    def tpots(run_id: str) -> list[float]:
        return replicate_values(groups.get(run_id, ()), lambda m: m.tpot_p50_ms)

    claims = []
    for run in compared:
        base_id = run.vs_baseline.baseline_run_id if run.vs_baseline else ""
        record, base = record_of.get(run.run_id), record_of.get(base_id)
        claims += [
            memory_claim(run, record, base),
            time_claim(run, by_id.get(base_id), tpots(run.run_id), tpots(base_id), _where(record)),
            quality_claim(
                run,
                ranks.get(run.model),
                record.result.scored_text if record and record.result else "continuation",
            ),
        ]
    return tuple(claims)
