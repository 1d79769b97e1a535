"""The comparison of each run against its model's baseline precision on its own engine: plain
data in, rows out. A run whose engine runs no baseline (llama.cpp) compares with the default
engine's (quanteval.engines.baseline_engines). Which figures of a pair compare like for like is
one rule (`unlike`): another device marks memory, time and dollars; another engine or KV budget,
memory; either keeps the pair out of the Pareto front and the claim check.

Shared by the local table, the report and the operator's status summary.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from quanteval.api.result import PeakCause, RunResult
from quanteval.api.states import RunState
from quanteval.engines import Engine, baseline_run, engine_effect_pairs
from quanteval.precisions import Precision


@dataclass(frozen=True)
class Terms:
    """What a run's figures were measured on, as far as comparing them goes; "" where the
    result does not say (or the operator cannot tell before the worker ran): the same as any."""

    engine: str = ""  # the engine as it ran and its KV-cache budget (engine_terms below)
    device: str = ""  # where it computed: cpu or cuda (result.json device)


class Unlike(StrEnum):
    """Why a run's figures are not like for like with another's: marked ‡, and the pair kept
    out of the Pareto front and the claim check."""

    # A CPU against a GPU (llama.cpp computes on the CPU): memory, time and dollars are
    # another machine's.
    DEVICE = "device"
    # Another engine as it ran or KV-cache budget: peak memory is made of other things
    # (vLLM's is mostly the KV cache it reserves); time and dollars are the comparison's point.
    ENGINE = "engine"


def _differ(a: str, b: str) -> bool:
    return bool(a) and bool(b) and a != b


def unlike(run: Terms, base: Terms) -> Unlike | None:
    """The one rule of what compares like for like: the same device, then the same engine as
    it ran at the same KV-cache budget; None where both hold. Unknown (results from before
    engines were recorded, a run the operator cannot place) counts as the same."""
    if _differ(run.device, base.device):
        return Unlike.DEVICE
    if _differ(run.engine, base.engine):
        return Unlike.ENGINE
    return None


def memory_comparable(why: Unlike | None) -> bool:
    """Whether peak memory compares, given why the runs are unlike: only when they are not."""
    return why is None


def time_comparable(why: Unlike | None) -> bool:
    """Whether time and dollars compare, given why the runs are unlike: on one device they do
    (across engines they are what the comparison is for)."""
    return why != Unlike.DEVICE


class LikeForLike:
    """A pair's figures that compare like for like, from why the two runs are unlike (the
    dataclass's own `unlike` field): shared by the comparison and the report's."""

    unlike: Unlike | None

    @property
    def memory_comparable(self) -> bool:
        return memory_comparable(self.unlike)

    @property
    def time_comparable(self) -> bool:
        """Time and dollar ratios (memory_comparable: the memory %)."""
        return time_comparable(self.unlike)


def like_groups(terms: Mapping[str, Terms], *, time: bool = False) -> list[list[str]]:
    """Run ids (`terms`: by run id) in groups whose peak memory, or with `time` whose time and
    dollars, compare like for like (unlike): each run joins the first group it compares with
    every run of, so a run whose result does not say joins the first."""
    comparable = time_comparable if time else memory_comparable
    groups: list[list[str]] = []
    for run_id, own in terms.items():
        group = next((g for g in groups if all(comparable(unlike(own, terms[o])) for o in g)), None)
        if group is None:
            groups.append([run_id])
        else:
            group.append(run_id)
    return groups


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
    engine: Engine = Engine.AUTO
    terms: Terms = Terms()  # what its figures were measured on (unlike)


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
        engine=result.engine,
        terms=Terms(engine_terms(result.environment), result.device),
    )


@dataclass(frozen=True)
class Comparison(LikeForLike):
    outcome: RunOutcome
    is_baseline: bool
    memory_saving_pct: float | None  # peak memory saved against the baseline, in %
    weights_saving_pct: float | None
    f1_delta_pp: float | None  # F1 change against the baseline, in percentage points
    time_ratio: float | None  # generation time / the baseline's
    dollar_ratio: float | None = None  # dollars / the baseline's (both priced)
    peak_excess_bytes: int | None = None  # peak memory above the baseline's (when both known)
    baseline_run_id: str | None = None  # the run compared with (when it succeeded)
    # Why the two runs' figures are not like for like (None: they are): the figures it covers
    # are marked, and the pair kept out of the Pareto front and the claim check.
    unlike: Unlike | None = None


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def _saving(value: int | None, base: int | None) -> float | None:
    if value is None or not base:
        return None
    return 100.0 * (1 - value / base)


def is_baseline_run(outcome: RunOutcome, baseline: Precision) -> bool:
    return outcome.precision == baseline and outcome.baseline_model is None


def baseline_for(
    outcome: RunOutcome, baselines: dict[tuple[str, Engine], RunOutcome], baseline: Precision
) -> RunOutcome | None:
    """The succeeded baseline run `outcome` compares with: its model's (or baselineModel's) at
    the baseline precision, on its own engine, else on the default engine."""
    model = outcome.baseline_model or outcome.model
    return baseline_run(baselines, model, outcome.engine, baseline)


def succeeded_baselines(
    outcomes: list[RunOutcome], baseline: Precision
) -> dict[tuple[str, Engine], RunOutcome]:
    return {
        (o.model, o.engine): o
        for o in outcomes
        if is_baseline_run(o, baseline) and o.state == RunState.SUCCEEDED
    }


def compare_pair(outcome: RunOutcome, base: RunOutcome | None, is_baseline: bool) -> Comparison:
    """`outcome` against `base` (no figures unless both succeeded)."""
    both = base if outcome.state == RunState.SUCCEEDED and base is not None else None
    if both is None:
        return Comparison(outcome, is_baseline, None, None, None, None, baseline_run_id=None)
    known_f1 = outcome.f1_macro is not None and both.f1_macro is not None
    known_peaks = outcome.peak_memory_bytes is not None and both.peak_memory_bytes is not None
    return Comparison(
        outcome=outcome,
        is_baseline=is_baseline,
        memory_saving_pct=_saving(outcome.peak_memory_bytes, both.peak_memory_bytes),
        weights_saving_pct=_saving(outcome.weights_bytes, both.weights_bytes),
        f1_delta_pp=100.0 * ((outcome.f1_macro or 0.0) - (both.f1_macro or 0.0))
        if known_f1
        else None,
        time_ratio=_ratio(outcome.generation_seconds, both.generation_seconds),
        dollar_ratio=_ratio(outcome.dollars, both.dollars),
        peak_excess_bytes=(outcome.peak_memory_bytes or 0) - (both.peak_memory_bytes or 0)
        if known_peaks
        else None,
        baseline_run_id=both.run_id,
        unlike=unlike(outcome.terms, both.terms),
    )


def compare(outcomes: list[RunOutcome], baseline: Precision) -> list[Comparison]:
    """Each run against its model's run at `baseline` on its engine, or its baselineModel's
    (None where either is missing)."""
    baselines = succeeded_baselines(outcomes, baseline)
    return [
        compare_pair(o, baseline_for(o, baselines, baseline), is_baseline_run(o, baseline))
        for o in outcomes
    ]


def engine_effects(outcomes: list[RunOutcome], baseline: Precision) -> list[Comparison]:
    """Each named engine's succeeded baseline run against the default engine's of its model."""
    baselines = succeeded_baselines(outcomes, baseline)
    return [
        compare_pair(baselines[run], baselines[reference], is_baseline=False)
        for run, reference in engine_effect_pairs(baselines)
    ]


def engine_terms(environment: dict[str, object]) -> str:
    """What a run's peak memory is made of, as a key: the engine that ran, and its KV-cache
    budget where it fixes one (`vllm kv 1073741824`); "" when the result does not say."""
    engine = environment.get("engine")
    if not isinstance(engine, dict):
        return ""
    budget = engine.get("kvCacheBytes")
    return f"{engine.get('name', '')} kv {budget}" if budget is not None else str(engine["name"])


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
