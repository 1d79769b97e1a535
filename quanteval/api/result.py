"""The result of one run (`result.json`, versioned)."""

import json
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from quanteval.api.runspec import EvaluationRef
from quanteval.engines import Engine
from quanteval.precisions import Precision

RESULT_SCHEMA: Final = "quanteval.io/result/v1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


class RunMetrics(_Model):
    """The headline numbers of a run; the names are shared with the QuantEval status.

    Times are wall seconds of the run's own phases: download (or cache hit) apart from load;
    prefill (each batch's start to its first token's logits) and decode (the rest of the batch),
    summed over batches. TTFT, TPOT and latency are per sample, p50/p95 over samples, from per-step
    timestamps taken after a device sync. tokensPerSecond is decode tokens (all but each sample's
    first, which prefill produced) over decode seconds. Fields added after schema v1's first
    results are optional, so older result.json files still read.
    """

    f1_macro: float
    accuracy: float
    intensity: float
    distinct1: float
    distinct2: float
    weights_bytes: int
    peak_memory_bytes: int
    load_peak_memory_bytes: int
    generation_peak_memory_bytes: int
    load_seconds: float
    generation_seconds: float
    tokens_per_second: float
    latency_p50_ms: float  # per sample: its batch's start to its own end of sequence
    latency_p95_ms: float
    generated_tokens: int
    samples: int
    download_seconds: float | None = None
    prefill_seconds: float | None = None
    decode_seconds: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    tpot_p50_ms: float | None = None
    tpot_p95_ms: float | None = None
    gpu_seconds: float | None = None  # GPUs x wall seconds of the run's work; 0 on a CPU
    cpu_seconds: float | None = None  # CPU time of the run's work (user + system)
    joules_per_token: float | None = None  # generation phase joules / generated tokens
    dollars: float | None = None  # only from a price given (spec.cost or the operator's)
    dollars_per_1k_generations: Annotated[float | None, Field(alias="dollarsPer1kGenerations")] = (
        None
    )
    # The KV cache the engine reserved up front (vLLM's budget), which every peak above holds.
    kv_cache_budget_bytes: int | None = None
    # Samples an earlier attempt generated, resumed from partial/ (None: one attempt did all).
    resumed_samples: int | None = None
    # The attempts that made the run, where more than one: the status counts them too, as a Job
    # does not count a pod evicted or preempted (DisruptionTarget: its podFailurePolicy ignores it).
    attempt_count: int | None = None


class EmotionScores(_Model):
    f1: float
    precision: float
    recall: float
    support: int
    intensity: float


class ConfusionMatrix(_Model):
    labels: list[str]  # rows: intended emotion; columns: predicted (may include other labels)
    predicted_labels: list[str]
    matrix: list[list[int]]


class GenerationSettings(_Model):
    """Every generation setting in force for a run: from the spec and its preset, nothing else."""

    prompt_format: Literal["chat", "raw"]
    special_tokens_added: bool  # raw: the tokenizer's own (BOS); chat: the template holds them
    do_sample: bool
    temperature: float | None  # null when decoding greedily: not in force
    top_k: int | None
    top_p: float | None
    max_length: int | None  # prompt included, as the model receives it
    max_new_tokens: int | None  # end of sequence not counted
    samples_per_prompt: int
    seed: int
    batch_size: int  # the batch size that fitted (continuous: every sample, one submission)
    stop_token_ids: list[int]
    # What the model's generation_config.json sets (sampling defaults): recorded, never applied.
    model_defaults_ignored: dict[str, Any]
    # fixed: our batches, one after another; continuous: all at once, as vLLM schedules them.
    batching: Literal["fixed", "continuous"] = "fixed"
    # Where per-sample timings come from, and how they were checked (vLLM: its request metrics,
    # against the caller's clock); absent where the caller's own clock times every step.
    timing: dict[str, Any] | None = None


class EnergyFigures(_Model):
    """Joules per phase from a monotonic counter, read at each phase's start and end."""

    source: Literal["nvml", "rapl"]  # NVML: every GPU of the pod; RAPL: the CPU packages
    phases: dict[str, float]
    joules_per_token: float | None


class FidelitySummary(_Model):
    """The run's pass over the reference corpus (quanteval.fidelity); the data is in `file`."""

    file: str
    sequences: int
    positions: int  # tokens scored
    mean_kept_mass: float  # probability the stored tokens hold, mean over positions
    mean_kept_tokens: float
    max_kept_tokens: int
    bytes: int
    seconds: float


class ClassifierReference(_Model):
    """The same texts scored by the evaluation's classifier (its probability of the named
    emotion, x 100) in the same run, timed the same way: what an LLM's rating is measured
    against."""

    classifier: str
    device: str
    texts: int
    spearman_rho: float | None
    spearman_rho_ci95: tuple[float, float] | None
    spearman_rho_unavailable: str | None = None
    seconds: float
    ratings_per_second: float
    dollars_per_1k_ratings: float | None  # CPU time x cpuHourUSD; None without a price


class RankAgreement(_Model):
    """The model's and the classifier's Spearman rho against the intended levels on the same
    texts, and the model's minus the classifier's with its 95% percentile bootstrap interval
    resampling whole situations (quanteval.stats.rho_difference)."""

    texts: int
    situations: int
    model_rho: float
    classifier_rho: float
    difference: float
    difference_ci95: tuple[float, float]


class LevelRating(_Model):
    """The ratings of one intended level's texts (a calibration point): the model's mean with its
    95% bootstrap interval over the texts it rated, and the classifier's mean on those texts."""

    level: int
    texts: int
    mean: float
    mean_ci95: tuple[float, float] | None  # None for a single text
    classifier_mean: float | None = None


class IntensityFigures(_Model):
    """The intensity task's figures for the run alone (against the baseline: the report's)."""

    texts: int
    parse_failures: int  # answers with no rating: counted, kept in ratings.jsonl, never scored
    parse_failure_rate: float
    # By reason (quanteval.intensity.ParseFailure); empty in results from before reasons.
    parse_failures_by_reason: dict[str, int] = {}
    # The model's rho (first) and the classifier's (second) against the intended levels on the
    # same texts (the model's parse failures left out of both), the difference's interval
    # resampling situations; overall and per emotion, or why not (a string).
    same_texts: RankAgreement | str | None = None
    same_texts_by_emotion: dict[str, RankAgreement | str] = {}
    calibration: tuple[LevelRating, ...] = ()  # by intended level; empty without levels
    spearman_rho: float | None  # ratings against the intended level; None below 10 or constant
    spearman_rho_ci95: tuple[float, float] | None
    spearman_rho_unavailable: str | None = None  # why there is no rho
    mae_vs_gold: float | None  # points, where texts carry a gold score
    mae_vs_gold_ci95: tuple[float, float] | None
    seconds: float  # the task's phase, wall
    ratings_per_second: float
    latency_p50_ms: float
    latency_p95_ms: float
    rule: str  # how a rating is read from an answer
    method: str = "greedy"  # intensity.method: greedy, or expected (quanteval.expected_rating)
    # expected: the mean mass on no number, and the seconds the probability walk took (inside
    # `seconds`), beside the greedy answers' own.
    non_numeric_mass_mean: float | None = None
    expected_seconds: float | None = None
    dollars_per_1k_ratings: float | None = None  # the phase's GPU/CPU time x price; None unpriced
    joules_per_1k_ratings: float | None = None  # the phase's energy (NVML or RAPL) per 1,000
    classifier: ClassifierReference | None = None


class PeakCause(_Model):
    """What, measured, made a phase's peak larger than its tensors needed."""

    allocation: str
    bytes: int


class CheckpointQuantization(_Model):
    """How a pre-quantized checkpoint (precision native) was quantized, as its files say."""

    method: str  # quant_method: gptq, awq, bitsandbytes, torchao, compressed-tensors, gguf, ...
    bits: int | None = None  # weight bits (None where the checkpoint does not say)
    group_size: int | None = None  # weights sharing one scale (None: per row, or unsaid)
    kind: str = ""  # the method's own name of the variant: nf4, Int8WeightOnlyConfig, Q4_1, ...

    @property
    def bytes_per_parameter(self) -> float | None:
        """Storage per weight: the bits, and a 16-bit scale and zero point per group."""
        if self.bits is None:
            return None
        return self.bits / 8 + (4 / self.group_size if self.group_size else 0.0)

    def describe(self) -> str:
        """`gptq, 4-bit, group 128`."""
        same = not self.kind or self.kind.lower() == self.method
        parts = [self.method if same else f"{self.method} {self.kind}"]
        if self.bits is not None:
            parts.append(f"{self.bits}-bit")
        if self.group_size is not None:
            parts.append(f"group {self.group_size}")
        return ", ".join(parts)


class Attempt(_Model):
    """One attempt of a run (a pod, or one `quanteval run --local`): what it did and used, up
    to its last finished generation batch for an attempt that was cut off (what it spent after
    that batch is not known to the next one)."""

    attempt: int  # 1 for the first
    started_at: str
    load_seconds: float
    batches: list[int]  # the generation batches it finished (their indices)
    generation_seconds: float  # its batches' own wall time
    gpu_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int | None  # its generation phase's; None where it was cut off
    generation_joules: float | None = None  # its generation's energy (None: no counter)
    # Samples it generated in a batch smaller than the plan it resumed (out of memory on
    # another device): their batch's composition was not the uninterrupted run's.
    rebatched_samples: list[str] = []


class RunResult(_Model):
    schema_version: Literal["quanteval.io/result/v1"] = RESULT_SCHEMA
    evaluation: EvaluationRef
    run_id: str
    model: str
    source: str
    revision: str | None
    precision: Precision
    baseline: Precision
    content_hash: str
    device: str
    # Where a run was resumed (quanteval_worker.checkpoints): every attempt, this one last; its
    # GPU- and CPU-seconds and dollars are summed over them, its peak the largest. Empty: one.
    attempts: list[Attempt] = []
    # The spec's engine for this run (auto in results written before engines were an axis); the
    # engine that ran, with its version and settings, is environment.engine.
    engine: Engine = Engine.AUTO
    replicate: int = 1  # spec.replicates: which of the run's repeats (1: the run itself)
    # What the classifier read (classifier.scoreText): continuation, or promptAndContinuation.
    scored_text: str = "continuation"
    # The entry this run's model is a quantization of, when it is compared with that one's run.
    baseline_model: str | None = None
    # Precision native: how the checkpoint was quantized before we got it.
    checkpoint_quantization: CheckpointQuantization | None = None
    batch_size: int
    metrics: RunMetrics
    per_emotion: dict[str, EmotionScores]
    confusion: ConfusionMatrix
    memory: dict[str, int | PeakCause]  # every memory figure measured, by name
    generation: GenerationSettings | None = None  # absent in results written before it existed
    energy: EnergyFigures | str | None = None  # a string says why there is no figure
    fidelity: FidelitySummary | None = None  # absent in results written before it existed
    intensity_task: IntensityFigures | None = None  # where the evaluation's tasks hold intensity
    # What a reader must know to trust a figure (a capped macro-F1, say), one sentence each.
    warnings: list[str] = []
    environment: dict[str, Any]
    started_at: str
    finished_at: str

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2) + "\n"
