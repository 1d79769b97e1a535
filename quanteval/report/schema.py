"""The report's plain data (`report.json`, versioned): what compute.py produces, what is written.

Plain frozen dataclasses; `__pydantic_config__` only names their JSON fields in camelCase (read by
pydantic's TypeAdapter in serialize.py), as in `result.json`.
"""

from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal

from pydantic import ConfigDict

from quanteval.api.result import IntensityFigures
from quanteval.comparison import LikeForLike, Unlike
from quanteval.engines import Engine
from quanteval.fidelity import FidelityFigures
from quanteval.precisions import Precision
from quanteval.report.ratings import RatingDrift
from quanteval.stats import CAMEL_CASE, RunIntervals

REPORT_SCHEMA: Final = "quanteval.io/report/v1"


@dataclass(frozen=True)
class PairedTest:
    """The run against its baseline, sample by sample (same prompt, emotion, index and seed),
    with the prompt template as the unit of inference (quanteval.templates): the interval and the
    test say what holds for prompts like these; `ci95ThesePrompts` what holds for these prompts.

    Below 10 pairs or 2 templates only `pairs`, `unpaired`, the mark and the verdict are set.
    """

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    pairs: int
    unpaired: int  # samples of either run without a partner in the other, left out
    verdict: str  # the mark in words, with what settles it
    mark: str  # quanteval.templates.Mark: worse, better, no detectable difference, ...
    templates: int | None = None  # prompt templates among the pairs: the units resampled
    delta_f1_pp: float | None = None  # on the pairs, in points
    # Prompts like these: leave-one-template-out jackknife, t on templates - 1 df, points.
    ci95: tuple[float, float] | None = None
    family_size: int | None = None  # k: the evaluation's comparisons, tested together
    confidence: float | None = None  # 1 - 0.05/k (Bonferroni): the level of `ci`
    ci: tuple[float, float] | None = None  # the interval at `confidence`: the mark is read from it
    ci95_these_prompts: tuple[float, float] | None = None  # sample bootstrap (BCa), points
    design_effect: float | None = None  # template-level variance / sample-level variance
    test: str = "permutation test of ΔF1 exchanging whole templates"
    p_value: float | None = None
    p_value_adjusted: float | None = None  # Holm, across the evaluation's comparisons
    accuracy_test: str = "McNemar exact test of per-sample correctness (secondary)"
    mcnemar_p_value: float | None = None  # unadjusted
    only_baseline_right: int | None = None  # the discordant pairs McNemar counts
    only_run_right: int | None = None
    intensity_delta: float | None = None  # mean paired change, 0-100
    intensity_test: str = "Wilcoxon signed-rank test"
    intensity_p_value: float | None = None
    # At 80% power with the family's test, from this data's template-level spread.
    min_detectable_f1_pp: float | None = None
    # What a 5-point change needs: templates at this samplesPerPrompt, or samplesPerPrompt with
    # these templates (None: no number of samples does, the templates' own spread is the floor).
    templates_for_5pp: int | None = None
    samples_per_prompt_for_5pp: int | None = None
    # Per-sample latency (batch start to the sample's end), run over baseline on the pairs; the
    # interval resamples samples, which share batches: read it as a spread, not an exact bound.
    latency_ratio: float | None = None
    latency_ratio_ci95: tuple[float, float] | None = None


@dataclass(frozen=True)
class NoiseFloor:
    """The baseline against itself with other seeds (A/A): what ROUGE and intensity drift read
    when nothing but the seed changed. With sampling one token's flip changes the rest of a
    text, so a run's ROUGE means something only beside this."""

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    source: str  # how the two sides were drawn: the baseline's seed halves, or its replicate
    pairs: int
    rouge1: float
    rouge2: float
    rouge_l: float
    intensity_drift: float


@dataclass(frozen=True)
class BaselineComparison(LikeForLike):
    """A run against the same model's baseline run (the baseline against itself too)."""

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    baseline_run_id: str
    weights_saving_pct: float | None  # 100 * (1 - weights / baseline's)
    memory_saving_pct: float | None  # 100 * (1 - peak memory / baseline's)
    f1_delta_pp: float | None  # 100 * (F1 - baseline's F1): percentage points
    time_ratio: float | None  # generation seconds / baseline's
    matched_samples: int  # samples (prompt, emotion, sample index) both runs generated
    rouge1: float | None  # mean ROUGE F-measure against the baseline's text of the same sample
    rouge2: float | None
    rouge_l: float | None
    intensity_drift: float | None  # mean |intended-emotion probability - baseline's| x 100
    dollar_ratio: float | None = None  # dollars / baseline's, both priced
    paired: PairedTest | None = None  # None for the baseline itself
    fidelity: FidelityFigures | None = None  # quanteval.fidelity: KL, top-1, perplexity ratio
    fidelity_unavailable: str | None = None  # why there is no fidelity figure, when there is none
    rating_drift: RatingDrift | None = None  # the intensity task's ratings against the baseline's
    # Why the two runs' figures are not like for like (quanteval.comparison.unlike; None: they
    # are): engine marks the memory %, device the memory %, time and dollar ratios (‡).
    unlike: Unlike | None = None
    noise_floor: NoiseFloor | None = None  # None: one sample a prompt and no replicate


@dataclass(frozen=True)
class RunReport:
    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    run_id: str
    model: str
    precision: Precision
    state: str  # Succeeded, Failed (started, no valid result.json), Missing (nothing written)
    reason: str
    baseline: Precision | None  # the model's baseline precision, as its results record it
    is_baseline: bool
    f1_macro: float | None = None
    accuracy: float | None = None
    intensity: float | None = None
    distinct1: float | None = None
    distinct2: float | None = None
    weights_bytes: int | None = None
    peak_memory_bytes: int | None = None
    generation_seconds: float | None = None
    tokens_per_second: float | None = None
    ttft_ms: float | None = None  # p50 over samples
    tpot_ms: float | None = None  # p50 over samples
    gpu_seconds: float | None = None
    dollars: float | None = None  # only from a given price
    samples: int = 0  # generations read
    per_emotion_f1: dict[str, float] = field(default_factory=dict)
    intervals: RunIntervals | None = None  # quanteval.stats; None below two samples
    vs_baseline: BaselineComparison | None = None  # None: the run or its baseline did not succeed
    intensity_task: IntensityFigures | None = None  # the run's own, from result.json
    on_pareto_front: bool = False
    warnings: tuple[str, ...] = ()  # from result.json: what a reader must know (capped macro-F1)
    checkpoint: str = ""  # precision native: how the checkpoint was quantized (gptq 4-bit, ...)
    engine: Engine = Engine.AUTO  # the spec's engine (what ran: result.json environment.engine)


@dataclass(frozen=True)
class EngineEffect:
    """A named engine's baseline-precision run against the default engine's run of the same
    model and precision: what the engine alone changes. Samples pair by prompt and seed, but
    the texts differ (logits differ in the last bits, and a token moves with them)."""

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    run_id: str
    engine: Engine
    vs: BaselineComparison  # against the default engine's run (vs.baseline_run_id)


@dataclass(frozen=True)
class ClaimComparison:
    """A larger model at a lower precision against a smaller one at a higher precision."""

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    larger_run_id: str
    larger_f1: float
    larger_peak_memory_bytes: int
    smaller_run_id: str
    smaller_f1: float
    smaller_peak_memory_bytes: int
    memory_ratio: float  # the larger model's peak memory / the smaller's
    larger_wins: bool  # strictly higher F1 (a raw fact; the outcome is what the data settles)
    pairs: int = 0  # samples both runs generated
    delta_f1_pp: float | None = None  # larger's macro-F1 minus smaller's, on the pairs
    templates: int | None = None  # prompt templates among the pairs
    # Template level (jackknife, t on templates - 1 df), points: at 95%, and at the claim's
    # family level (ClaimCheck.confidence), from which the outcome is read.
    ci95: tuple[float, float] | None = None
    ci: tuple[float, float] | None = None
    outcome: str = "not settled by this data"  # supported / contradicted / not settled ...


@dataclass(frozen=True)
class ClaimCheck:
    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    claim: str
    similar_memory: str  # how "similar memory" is defined
    comparisons: tuple[ClaimComparison, ...]
    wins: int
    verdict: str
    models_by_size: tuple[str, ...]  # largest first, by parameters
    models_left_out: tuple[str, ...]  # no succeeded run, so no size
    supported: int = 0  # comparisons whose ΔF1 interval lies above 0
    contradicted: int = 0  # ... below 0
    family_size: int = 0  # k: the comparisons settled together
    confidence: float | None = None  # 1 - 0.05/k (Bonferroni): each interval's level


@dataclass(frozen=True)
class StudyClaim:
    """One of the study's headline figures, checked on one run (quanteval.report.study)."""

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    run_id: str
    claim: str
    measured: str
    outcome: str  # supported / contradicted / not settled by this data / measured
    ci95: tuple[float, float] | None = None


@dataclass(frozen=True)
class Spread:
    """One figure over a run's replicates: each repeat's value, their mean and the 95% t
    interval of the mean (run to run: the machine, the seeds, the allocator)."""

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    mean: float
    ci95: tuple[float, float]
    values: tuple[float, ...]


@dataclass(frozen=True)
class ReplicateFigures:
    """A run and its repeats (spec.replicates), for time, memory and dollars."""

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    run_id: str  # the first replicate's, the run's own id
    replicates: tuple[str, ...]  # every replicate's run id, the first first
    succeeded: int
    generation_seconds: Spread | None = None  # None below two succeeded replicates
    tpot_ms: Spread | None = None  # p50 over each replicate's samples
    peak_memory_bytes: Spread | None = None
    dollars: Spread | None = None


@dataclass(frozen=True)
class SampleCell:
    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    run_id: str
    precision: Precision
    text: str | None  # None: this run has no generation for the sample
    predicted: str | None = None
    intensity: float | None = None  # the intended emotion's probability x 100


@dataclass(frozen=True)
class SampleRow:
    """One sample (prompt, emotion, sample index) of one model at each of its precisions."""

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    model: str
    key: str
    emotion: str
    prompt: str
    cells: tuple[SampleCell, ...]


@dataclass(frozen=True)
class EvaluationInfo:
    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True, kw_only=True)
class Report:
    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    schema_version: Literal["quanteval.io/report/v1"] = REPORT_SCHEMA
    source: str  # the evaluation's directory or S3 prefix
    generated_at: str
    evaluation: EvaluationInfo | None  # None when no run succeeded
    emotions: tuple[str, ...]
    runs: tuple[RunReport, ...]
    best_run: str | None  # highest F1; on a tie, less peak memory
    # Runs not significantly worse than best_run (itself included): what the data lets one call
    # the best (McNemar, Holm-adjusted; with fewer than 10 paired samples a run stays in).
    best_runs: tuple[str, ...]
    pareto_front: tuple[str, ...]  # run ids, by peak memory
    pareto_front_dollars: tuple[str, ...] | None  # by dollars; None unless every run is priced
    claim: ClaimCheck
    study_claims: tuple[StudyClaim, ...]  # the study's 76% memory, ~2x time, ±10 points
    samples: tuple[SampleRow, ...]
    ignored: tuple[str, ...] = ()  # names under runs/ that are not runs
    engine_effects: tuple[EngineEffect, ...] = ()  # in the comparisons' family
    replicates: tuple[ReplicateFigures, ...] = ()  # runs made more than once (spec.replicates)

    @property
    def title(self) -> str:
        return self.evaluation.name if self.evaluation else self.source
