"""One run as phases: prepare (everything that can fail cheaply), load, generate, write, score.

Every check that needs no model comes first (the device against the precision, the classifier and
its labels, the tokenizer, the prompt format and lengths), so a mistake costs seconds, not a GPU
run. Generations are written before they are scored, so a scoring failure never loses them.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from quanteval.api.errors import InvalidSpecError
from quanteval.api.layout import FIDELITY_FILE, GENERATIONS_FILE, RATINGS_FILE
from quanteval.api.records import SampleRecord, sha256_hex
from quanteval.api.result import (
    Attempt,
    CheckpointQuantization,
    EnergyFigures,
    FidelitySummary,
    GenerationSettings,
    RunMetrics,
    RunResult,
)
from quanteval.api.runspec import RunSpec
from quanteval.api.spec import CostSpec
from quanteval.cost import per_thousand, run_dollars
from quanteval.engines import Engine as EngineName
from quanteval.engines import refusal
from quanteval.fidelity import KEPT_MASS, TokenDistributions
from quanteval.precisions import Precision
from quanteval.prompts import Sample, expand_samples
from quanteval.storage import Storage
from quanteval.textstats import distinct_n, percentile
from quanteval_worker.checkpoints import Checkpoints, FidelityCheckpoints
from quanteval_worker.classifier import LoadedClassifier, Prediction, load_classifier, predict
from quanteval_worker.device import DeviceInfo, detect_device
from quanteval_worker.engines import (
    LLAMA_CPP,
    VLLM,
    Engine,
    check_installed,
    check_vllm_checkpoint,
    choose_engine,
    load_engine,
)
from quanteval_worker.environment import describe_environment
from quanteval_worker.events import emit, log
from quanteval_worker.fidelity import reference_sequences, score_reference
from quanteval_worker.generation import (
    Generation,
    ResumeFrom,
    check_prompt_format,
    check_prompt_lengths,
    prompt_lengths,
    requested_batch,
)
from quanteval_worker.intensity import (
    classifier_reference,
    intensity_figures,
    intensity_progress,
    rate,
    ratings_lines,
    with_texts,
)
from quanteval_worker.loading import (
    fetch_source,
    gpu_memory_caps,
    load_tokenizer,
    release_device_memory,
)
from quanteval_worker.precisions import Bf16Mode, PrecisionStrategy, strategy_for
from quanteval_worker.scoring import Scores, score
from quanteval_worker.sources import ResolvedSource, resolve_source, source_quantization
from quanteval_worker.trackers import PhaseTracker, cpu_seconds_used


@dataclass(frozen=True)
class Prepared:
    """What a run needs before its model loads, every part of it already checked."""

    device: DeviceInfo
    strategy: PrecisionStrategy
    bf16: Bf16Mode
    classifier: LoadedClassifier
    source: ResolvedSource
    download_seconds: float  # fetching (or finding in the cache) the model's files
    tokenizer: Any
    samples: list[Sample]
    checkpoint: CheckpointQuantization | None  # how the files were quantized before we got them
    engine: str  # engines.TRANSFORMERS, LLAMA_CPP or VLLM


@dataclass(frozen=True)
class Generated:
    generations: list[Generation]
    settings: GenerationSettings


def prepare(spec: RunSpec) -> Prepared:
    why = refusal(spec.precision, spec.engine)
    if why is not None:  # a run spec that skipped validation: refused, never run by another
        raise InvalidSpecError(why)
    if spec.engine != EngineName.AUTO:
        check_installed(spec.engine.value)
    device = detect_device()
    strategy = strategy_for(spec.precision)
    bf16 = strategy.check(device, spec.allow_bf16_emulation)
    log("loading the classifier", classifier=spec.classifier.source or spec.classifier.builtin)
    classifier = load_classifier(spec.classifier, spec.emotions, spec.s3_endpoint, spec.s3_region)
    for warning in classifier.warnings(spec.emotions):
        log(warning, level="warning")
    log("resolving model", source=spec.model.source, precision=spec.precision.value)
    began = time.perf_counter()
    source = fetch_source(
        resolve_source(spec.model.source, spec.model.revision, spec.s3_endpoint, spec.s3_region)
    )
    download_seconds = time.perf_counter() - began
    checkpoint = source_quantization(source)
    engine = choose_engine(spec.precision, source, spec.engine)
    if spec.engine == EngineName.AUTO:  # a named engine was checked before anything loaded
        check_installed(engine)
    if engine == VLLM and spec.precision == Precision.NATIVE:
        check_vllm_checkpoint(checkpoint, spec.model.source)
    else:
        strategy.check_checkpoint(checkpoint, spec.model.source, device)
    if engine == LLAMA_CPP and device.kind != "cpu":
        log("llama.cpp runs the GGUF file on the CPU (the worker's build has no CUDA)")
        device = device.on_cpu()
    tokenizer = load_tokenizer(source)
    check_prompt_format(tokenizer, spec.generation, source.location)
    samples = expand_samples(
        spec.prompts, spec.emotions, spec.generation.samples_per_prompt, spec.generation.seed
    )
    check_prompt_lengths(
        prompt_lengths(tokenizer, samples, spec.generation), samples, spec.generation
    )
    return Prepared(
        device,
        strategy,
        bf16,
        classifier,
        source,
        download_seconds,
        tokenizer,
        samples,
        checkpoint,
        engine,
    )


def load(spec: RunSpec, prepared: Prepared, tracker: PhaseTracker) -> Engine:
    caps = gpu_memory_caps(spec.gpu_memory_gib)
    with tracker.phase("load"):
        engine = load_engine(
            prepared.engine,
            prepared.source,
            prepared.strategy,
            prepared.device,
            caps,
            prepared.checkpoint,
            spec.vllm,
            spec.generation.batch_size if isinstance(spec.generation.batch_size, int) else None,
        )
        # A checkpoint mapped from its file is read in here: serving needs the weights in
        # memory, so the time and the memory of reading them are the load's.
        engine.make_resident()
    loaded = engine.loaded
    log(
        "model loaded",
        seconds=round(tracker.seconds["load"], 2),
        weightsBytes=loaded.weights_bytes,
        dtypes=loaded.dtypes,
    )
    return engine


def generate(
    spec: RunSpec,
    prepared: Prepared,
    engine: Engine,
    tracker: PhaseTracker,
    checkpoints: Checkpoints,
    resume: ResumeFrom | None,
) -> Generated:
    def on_batch(done: int, total: int) -> None:
        emit("progress", task="generation", done=done, total=total)

    if resume is None:
        emit("progress", task="generation", done=0, total=len(prepared.samples))
    generator = engine.generator(prepared.tokenizer, spec.generation, prepared.device.kind)
    requested = spec.generation.batch_size
    with tracker.phase("generation", holds_bytes=engine.resident_bytes):
        generations, batch_size = generator.generate_all(
            prepared.samples,
            requested_batch(requested, len(prepared.samples)),
            on_batch,
            tracker.memory,
            resume,
            checkpoints.save,
        )
    # continuous: vLLM scheduled them all at once (validation allows it on vllm only)
    return Generated(generations, generator.settings(batch_size, requested == "continuous"))


def measure_fidelity(
    spec: RunSpec,
    prepared: Prepared,
    engine: Engine,
    tracker: PhaseTracker,
    storage: Storage,
    saved: FidelityCheckpoints,
    done: list[TokenDistributions],
) -> FidelitySummary:
    """Score the reference corpus, after the batches an earlier attempt scored (`done`), and
    store what the report compares against the baseline."""
    sequences = reference_sequences(prepared.tokenizer, prepared.samples, spec.generation)
    log("scoring the reference corpus", sequences=len(sequences), resumedBatches=len(done))
    with tracker.phase("fidelity", holds_bytes=engine.resident_bytes):
        distributions = score_reference(engine, sequences, done, saved.save)
    data = distributions.to_bytes()
    storage.write_bytes(FIDELITY_FILE, data)
    kept = np.diff(distributions.offsets)
    return FidelitySummary(
        file=FIDELITY_FILE,
        sequences=len(sequences),
        positions=distributions.positions,
        mean_kept_mass=float(distributions.kept_mass().mean()),
        mean_kept_tokens=float(kept.mean()),
        max_kept_tokens=int(kept.max()),
        bytes=len(data),
        seconds=tracker.seconds["fidelity"],
    )


def kv_budget(engine: Engine) -> dict[str, int]:
    """The KV cache an engine reserves up front (vLLM's budget), which every phase's peak holds:
    recorded beside the memory figures."""
    reserved = engine.resident_bytes - engine.loaded.weights_bytes
    return {"kvCacheBudgetBytes": reserved} if reserved else {}


def capped_fidelity(engine: Engine, fidelity: FidelitySummary) -> list[str]:
    """Say so where the engine gave fewer log-probabilities at a position than the kept-mass
    rule asked for (vLLM's cap): the KL lower bound is looser by what was not kept."""
    cap = engine.info.settings.get("fidelityTopK")
    if cap is None or fidelity.max_kept_tokens < cap:  # the cap bound no position
        return []
    return [
        f"fidelity: {engine.info.name} gives at most {cap} log-probabilities a position, and "
        f"some positions needed more; they held {fidelity.mean_kept_mass:.3f} of the "
        f"probability on average (the rule asks {KEPT_MASS}): the KL figures are a looser lower "
        "bound than where every position keeps what it needs"
    ]


def generation_records(
    generations: list[Generation], predictions: list[Prediction] | None = None
) -> str:
    """`generations.jsonl`: one line per sample; with the classifier's verdict once scored."""
    lines = []
    for index, g in enumerate(generations):
        scored: dict[str, Any] = {}
        if predictions is not None:
            p = predictions[index]
            scored = {
                "predicted": p.label,
                "probabilities": {k: round(v, 5) for k, v in p.probabilities.items()},
            }
        record = SampleRecord(
            key=g.sample.key,
            prompt_id=g.sample.prompt_id,
            emotion=g.sample.emotion,
            sample_index=g.sample.sample_index,
            seed=g.sample.seed,
            prompt=g.sample.prompt,
            prompt_sha256=sha256_hex(g.sample.prompt),
            text=g.text,
            **scored,
            prompt_tokens=g.prompt_tokens,
            new_tokens=g.new_tokens,
            batch=g.batch.index,
            ttft_ms=round(g.ttft_seconds * 1000, 2),
            tpot_ms=None if g.tpot_seconds is None else round(g.tpot_seconds * 1000, 3),
            latency_ms=round(g.latency_seconds * 1000, 2),
        )
        lines.append(record.to_line())
    return "\n".join(lines) + "\n"


def scored_text(generation: Generation, score_text: str) -> str:
    """What the classifier reads of a generation: its continuation, or the prompt followed by
    it as the study's pipeline returned it (its generated_text: the prompt, then the decoded
    continuation, joined as they are)."""
    if score_text == "promptAndContinuation":
        return generation.sample.prompt + generation.text
    return generation.text


def classify(
    classifier: LoadedClassifier,
    generations: list[Generation],
    emotions: list[str],
    score_text: str = "continuation",
) -> tuple[list[Prediction], Scores]:
    log("classifying", samples=len(generations), text=score_text)
    predictions = predict(classifier.classifier, [scored_text(g, score_text) for g in generations])
    intended = [g.sample.emotion for g in generations]
    intended_probability = [
        p.probabilities.get(e, 0.0) for p, e in zip(predictions, intended, strict=True)
    ]
    scores = score(intended, [p.label for p in predictions], intended_probability, emotions)
    return predictions, scores


def energy_figures(tracker: PhaseTracker, generated_tokens: int) -> EnergyFigures | str:
    """Joules per phase and per generated token, or why there are none."""
    counter = tracker.energy
    if counter.read is None:
        return counter.unavailable
    if "generation" not in tracker.joules:
        return f"the {counter.source} counter could not be read during generation"
    joules = tracker.joules["generation"]
    per_token = joules / generated_tokens if generated_tokens else None
    source = "nvml" if counter.source == "nvml" else "rapl"
    return EnergyFigures(source=source, phases=dict(tracker.joules), joules_per_token=per_token)


def assemble(
    spec: RunSpec,
    prepared: Prepared,
    engine: Engine,
    generated: Generated,
    scores: Scores,
    tracker: PhaseTracker,
    started_at: str,
    fidelity: FidelitySummary,
) -> RunResult:
    loaded = engine.loaded
    generations = generated.generations
    texts = [g.text for g in generations]
    batches = {g.batch.index: g.batch for g in generations}.values()
    prefill_seconds = sum(b.prefill_seconds for b in batches)
    decode_seconds = sum(b.decode_seconds for b in batches)
    decode_tokens = sum(g.decode_tokens for g in generations)
    ttfts = [g.ttft_seconds * 1000 for g in generations]
    tpots = [g.tpot_seconds * 1000 for g in generations if g.tpot_seconds is not None]
    latencies = [g.latency_seconds * 1000 for g in generations]
    generated_tokens = sum(g.new_tokens for g in generations)
    energy = energy_figures(tracker, generated_tokens)
    gpu_seconds, cpu_seconds = tracker.gpu_seconds(), tracker.cpu_seconds()
    dollars = run_dollars(gpu_seconds, cpu_seconds, spec.cost)
    metrics = RunMetrics(
        f1_macro=scores.f1_macro,
        accuracy=scores.accuracy,
        intensity=scores.intensity,
        distinct1=distinct_n(texts, 1),
        distinct2=distinct_n(texts, 2),
        weights_bytes=loaded.weights_bytes,
        # Serving memory: weights plus generation's activations and KV cache. The load peak
        # (bitsandbytes quantizes from higher-precision weights) is its own figure.
        peak_memory_bytes=tracker.peaks["generation"],
        load_peak_memory_bytes=tracker.peaks["load"],
        generation_peak_memory_bytes=tracker.peaks["generation"],
        download_seconds=prepared.download_seconds,
        load_seconds=tracker.seconds["load"],
        generation_seconds=tracker.seconds["generation"],
        prefill_seconds=prefill_seconds,
        decode_seconds=decode_seconds,
        tokens_per_second=decode_tokens / decode_seconds if decode_seconds else 0.0,
        ttft_p50_ms=percentile(ttfts, 50),
        ttft_p95_ms=percentile(ttfts, 95),
        tpot_p50_ms=percentile(tpots, 50) if tpots else None,
        tpot_p95_ms=percentile(tpots, 95) if tpots else None,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        generated_tokens=generated_tokens,
        samples=len(generations),
        gpu_seconds=gpu_seconds,
        cpu_seconds=cpu_seconds,
        joules_per_token=energy.joules_per_token if isinstance(energy, EnergyFigures) else None,
        dollars=dollars,
        dollars_per_1k_generations=per_thousand(dollars, len(generations)),
        kv_cache_budget_bytes=kv_budget(engine).get("kvCacheBudgetBytes"),
    )
    environment = describe_environment(prepared.device.kind) | {
        "engine": engine.info.to_json(),
        "dtypes": loaded.dtypes,
        "bf16": prepared.bf16,
        "quantization": loaded.quantization,
        "classifier": prepared.classifier.name,
    }
    return RunResult(
        evaluation=spec.evaluation,
        run_id=spec.run_id,
        model=spec.model.name,
        source=spec.model.source,
        revision=spec.model.revision,
        precision=spec.precision,
        baseline=spec.baseline,
        content_hash=spec.content_hash,
        device=prepared.device.kind,
        engine=spec.engine,
        replicate=spec.replicate,
        scored_text=spec.classifier.score_text,
        baseline_model=spec.model.baseline_model,
        checkpoint_quantization=prepared.checkpoint if spec.precision == Precision.NATIVE else None,
        batch_size=generated.settings.batch_size,
        metrics=metrics,
        per_emotion=scores.per_emotion,
        confusion=scores.confusion,
        memory={
            **tracker.memory.figures,
            **tracker.memory.causes,
            "weightsBytes": loaded.weights_bytes,
            **kv_budget(engine),
        },
        generation=generated.settings,
        energy=energy,
        fidelity=fidelity,
        warnings=[
            *prepared.classifier.warnings(spec.emotions),
            *capped_fidelity(engine, fidelity),
            *prepared.device.unused_gpus(),
        ],
        environment=environment,
        started_at=started_at,
        finished_at=datetime.now(UTC).isoformat(),
    )


def over_attempts(result: RunResult, attempts: list[Attempt], cost: CostSpec) -> RunResult:
    """A resumed run's figures over its attempts: GPU- and CPU-seconds, dollars, generation time
    and energy summed (what the team paid, up to each cut-off attempt's last batch; energy only
    where every attempt had a counter), the generation peak the largest measured; each attempt's
    own in `attempts`, and their count."""
    earlier = attempts[:-1]
    metrics = result.metrics
    gpu = (metrics.gpu_seconds or 0.0) + sum(a.gpu_seconds for a in earlier)
    cpu = (metrics.cpu_seconds or 0.0) + sum(a.cpu_seconds for a in earlier)
    dollars = run_dollars(gpu, cpu, cost)
    peaks = [metrics.peak_memory_bytes] + [a.peak_memory_bytes or 0 for a in earlier]
    summed = metrics.model_copy(
        update={
            "gpu_seconds": gpu,
            "cpu_seconds": cpu,
            "dollars": dollars,
            "dollars_per_1k_generations": per_thousand(dollars, metrics.samples),
            "generation_seconds": metrics.generation_seconds
            + sum(a.generation_seconds for a in earlier),
            "peak_memory_bytes": max(peaks),
            "generation_peak_memory_bytes": max(peaks),
            "attempt_count": len(attempts),
        }
    )
    energy = result.energy
    earlier_joules = [a.generation_joules for a in earlier]
    if isinstance(energy, EnergyFigures) and None in earlier_joules:
        energy = (
            "an earlier attempt's generation energy was not measured (no counter where it ran), "
            "so the run has no total"
        )
        summed = summed.model_copy(update={"joules_per_token": None})
    elif isinstance(energy, EnergyFigures):
        joules = energy.phases.get("generation", 0.0) + sum(j or 0.0 for j in earlier_joules)
        tokens = metrics.generated_tokens
        energy = energy.model_copy(
            update={
                "phases": {**energy.phases, "generation": joules},
                "joules_per_token": joules / tokens if tokens else None,
            }
        )
        summed = summed.model_copy(update={"joules_per_token": energy.joules_per_token})
    return result.model_copy(update={"metrics": summed, "attempts": attempts, "energy": energy})


def evaluate(spec: RunSpec, storage: Storage) -> RunResult:
    """The run's phases in order; result.json is the caller's to write (the commit mark)."""
    started_at = datetime.now(UTC).isoformat()
    work_began, cpu_began = time.perf_counter(), cpu_seconds_used()
    task = with_texts(spec.intensity, spec) if spec.intensity is not None else None
    prepared = prepare(spec)
    tracker = PhaseTracker(prepared.device, work_began, cpu_began)

    def attempt_so_far(batches: list[int], seconds: float) -> Attempt:
        return Attempt(
            attempt=checkpoints.number,
            started_at=started_at,
            load_seconds=tracker.seconds.get("load", 0.0),
            batches=list(batches),
            generation_seconds=seconds,
            gpu_seconds=tracker.gpu_seconds(),
            cpu_seconds=tracker.cpu_seconds(),
            peak_memory_bytes=tracker.peaks.get("generation"),
            generation_joules=tracker.joules.get("generation", tracker.joules_so_far()),
            rebatched_samples=list(checkpoints.rebatched),
        )

    # What earlier attempts finished, read before the model loads.
    checkpoints = Checkpoints(storage, spec.content_hash, attempt=attempt_so_far)
    resume = checkpoints.resume(prepared.samples)
    fidelity_saved = FidelityCheckpoints(storage, spec.content_hash)
    fidelity_done = fidelity_saved.resume()
    progress = intensity_progress(storage, spec, task) if task is not None else None
    if resume is not None:
        log(
            "resuming after the last complete batch of an earlier attempt",
            attempt=checkpoints.number,
            batches=resume.batches,
            samples=len(resume.finished),
        )
    engine = load(spec, prepared, tracker)
    generated = generate(spec, prepared, engine, tracker, checkpoints, resume)
    storage.write_text(GENERATIONS_FILE, generation_records(generated.generations))
    fidelity = measure_fidelity(
        spec, prepared, engine, tracker, storage, fidelity_saved, fidelity_done
    )
    rated = None
    if task is not None and progress is not None:
        rated = rate(spec, task, engine, prepared.tokenizer, prepared.device, tracker, progress)
        storage.write_text(RATINGS_FILE, ratings_lines(rated.records))
    engine.close()
    release_device_memory(prepared.device)
    predictions, scores = classify(
        prepared.classifier, generated.generations, spec.emotions, spec.classifier.score_text
    )
    storage.write_text(GENERATIONS_FILE, generation_records(generated.generations, predictions))
    intensity = None
    if task is not None and rated is not None:
        reference, records = classifier_reference(prepared.classifier, task, rated, spec.cost)
        storage.write_text(RATINGS_FILE, ratings_lines(records))
        intensity = intensity_figures(
            records, rated.seconds, rated.dollars_per_1k, reference, rated.expected_seconds
        )
    result = assemble(spec, prepared, engine, generated, scores, tracker, started_at, fidelity)
    if checkpoints.earlier:
        last = attempt_so_far(checkpoints.mine, checkpoints.seconds)
        result = over_attempts(result, [*checkpoints.earlier, last], spec.cost)
        resumed = len(resume.finished) if resume is not None else 0
        metrics = result.metrics.model_copy(update={"resumed_samples": resumed})
        said = (
            f"resumed: {resumed} of {metrics.samples} samples were generated by an earlier "
            f"attempt ({len(result.attempts)} attempts; GPU- and CPU-seconds and dollars are "
            "summed over them, up to each cut-off attempt's last batch)"
        )
        result = result.model_copy(
            update={"metrics": metrics, "warnings": [*result.warnings, said]}
        )
    if intensity is not None and isinstance(result.energy, EnergyFigures):
        joules = result.energy.phases.get("intensity")
        if joules is not None and intensity.texts:  # the phase's counter, start to end
            per_1k = 1000.0 * joules / intensity.texts
            intensity = intensity.model_copy(update={"joules_per_1k_ratings": per_1k})
    return result.model_copy(update={"intensity_task": intensity})
