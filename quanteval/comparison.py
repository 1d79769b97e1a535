"""The comparison of each run against its model's baseline precision: plain data in, rows out.

Shared by the local table, the report and the operator's status summary.
"""

from dataclasses import dataclass

from quanteval.api.result import PeakCause, RunResult
from quanteval.api.states import RunState
from quanteval.precisions import Precision


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    model: str
    precision: Precision
    state: str  # Succeeded, Failed, ...
    baseline_model: str | None = None  # the entry it compares with, when not its own model
    f1_macro: float | None = None
    accuracy: float | None = None
    intensity: float | None = None
    weights_bytes: int | None = None
    peak_memory_bytes: int | None = None  # generation phase: weights, activations, KV cache
    load_peak_memory_bytes: int | None = None
    load_seconds: float | None = None
    generation_seconds: float | None = None
    tokens_per_second: float | None = None
    ttft_ms: float | None = None  # p50 over samples
    tpot_ms: float | None = None  # p50 over samples
    gpu_seconds: float | None = None
    dollars: float | None = None  # only from a given price
    joules_per_token: float | None = None
    energy_unavailable: str = ""  # why there is no energy figure, when there is none
    # CPU: freed memory the C allocator still held at generation's end (memory.generationPeakCause)
    allocator_held_bytes: int | None = None
    reason: str = ""
    # The intensity task, where it ran: the model's own 0-100 ratings of the corpus.
    rating_parse_failure_rate: float | None = None
    rating_spearman_rho: float | None = None  # against the texts' intended levels
    ratings_per_second: float | None = None
    dollars_per_1k_ratings: float | None = None


def outcome_of(result: RunResult, state: str = RunState.SUCCEEDED, reason: str = "") -> RunOutcome:
    """A run's outcome from its result.json."""
    m = result.metrics
    cause = result.memory.get("generationPeakCause")
    task = result.intensity_task
    return RunOutcome(
        run_id=result.run_id,
        model=result.model,
        precision=result.precision,
        state=state,
        baseline_model=result.baseline_model,
        f1_macro=m.f1_macro,
        accuracy=m.accuracy,
        intensity=m.intensity,
        weights_bytes=m.weights_bytes,
        peak_memory_bytes=m.peak_memory_bytes,
        load_peak_memory_bytes=m.load_peak_memory_bytes,
        load_seconds=m.load_seconds,
        generation_seconds=m.generation_seconds,
        tokens_per_second=m.tokens_per_second,
        ttft_ms=m.ttft_p50_ms,
        tpot_ms=m.tpot_p50_ms,
        gpu_seconds=m.gpu_seconds,
        dollars=m.dollars,
        joules_per_token=m.joules_per_token,
        energy_unavailable=result.energy if isinstance(result.energy, str) else "",
        allocator_held_bytes=cause.bytes if isinstance(cause, PeakCause) else None,
        reason=reason,
        rating_parse_failure_rate=task.parse_failure_rate if task else None,
        rating_spearman_rho=task.spearman_rho if task else None,
        ratings_per_second=task.ratings_per_second if task else None,
        dollars_per_1k_ratings=task.dollars_per_1k_ratings if task else None,
    )


@dataclass(frozen=True)
class Comparison:
    outcome: RunOutcome
    is_baseline: bool
    memory_saving_pct: float | None  # peak memory saved against the baseline, in %
    weights_saving_pct: float | None
    f1_delta_pp: float | None  # F1 change against the baseline, in percentage points
    time_ratio: float | None  # generation time / the baseline's
    dollar_ratio: float | None = None  # dollars / the baseline's (both priced)
    peak_excess_bytes: int | None = None  # peak memory above the baseline's (when both known)
    baseline_run_id: str | None = None  # the run compared with (when it succeeded)


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def _saving(value: int | None, base: int | None) -> float | None:
    if value is None or not base:
        return None
    return 100.0 * (1 - value / base)


def is_baseline_run(outcome: RunOutcome, baseline: Precision) -> bool:
    return outcome.precision == baseline and outcome.baseline_model is None


def compare(outcomes: list[RunOutcome], baseline: Precision) -> list[Comparison]:
    """Each run against its model's run at `baseline`, or its baselineModel's (None where either
    is missing)."""
    baselines = {
        o.model: o
        for o in outcomes
        if is_baseline_run(o, baseline) and o.state == RunState.SUCCEEDED
    }
    rows = []
    for outcome in outcomes:
        base = baselines.get(outcome.baseline_model or outcome.model)
        ok = outcome.state == RunState.SUCCEEDED and base is not None
        rows.append(
            Comparison(
                outcome=outcome,
                is_baseline=is_baseline_run(outcome, baseline),
                memory_saving_pct=_saving(outcome.peak_memory_bytes, base.peak_memory_bytes)
                if ok and base
                else None,
                weights_saving_pct=_saving(outcome.weights_bytes, base.weights_bytes)
                if ok and base
                else None,
                f1_delta_pp=100.0 * (outcome.f1_macro - base.f1_macro)
                if ok and base and outcome.f1_macro is not None and base.f1_macro is not None
                else None,
                time_ratio=_ratio(outcome.generation_seconds, base.generation_seconds)
                if ok and base
                else None,
                dollar_ratio=_ratio(outcome.dollars, base.dollars) if ok and base else None,
                peak_excess_bytes=outcome.peak_memory_bytes - base.peak_memory_bytes
                if ok
                and base
                and outcome.peak_memory_bytes is not None
                and base.peak_memory_bytes is not None
                else None,
                baseline_run_id=base.run_id if base else None,
            )
        )
    return rows


def peak_cause_note(row: Comparison) -> str | None:
    """Why a run's peak is above its baseline's, when the measured cause is the allocator's."""
    excess, held = row.peak_excess_bytes, row.outcome.allocator_held_bytes
    if not excess or excess <= 0 or not held:
        return None
    return (
        f"peak memory {excess / 2**20:.0f} MiB above the baseline's, while glibc malloc still "
        f"held {held / 2**20:.0f} MiB of freed memory at generation's end "
        "(result.json memory.generationPeakCause); the weights saving is the precision's"
    )


def best_run(outcomes: list[RunOutcome]) -> RunOutcome | None:
    """The succeeded run with the highest F1; on a tie, the one with less peak memory."""
    done = [o for o in outcomes if o.state == RunState.SUCCEEDED and o.f1_macro is not None]
    if not done:
        return None
    unknown = float("inf")  # a run of unknown memory never wins a tie
    return max(
        done,
        key=lambda o: (
            o.f1_macro or 0.0,
            -(o.peak_memory_bytes if o.peak_memory_bytes is not None else unknown),
        ),
    )
