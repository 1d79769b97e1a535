"""The intensity task: the model under test rates each text 0-100, greedy, through the same
engine as generation (batches, out-of-memory halving, per-sample timing), with the model loaded
once for every task of the run."""

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from quanteval.api.errors import InvalidSpecError, StorageError
from quanteval.api.records import RatingRecord, sha256_hex
from quanteval.api.result import ClassifierReference, IntensityFigures
from quanteval.api.runspec import IntensityItem, IntensityRun, RunSpec
from quanteval.api.spec import CostSpec, GenerationSpec
from quanteval.cost import per_thousand, run_dollars
from quanteval.expected_rating import ExpectedRating, expected_rating, number_tree
from quanteval.intensity import (
    RATING_RULE,
    ParseFailure,
    Rating,
    items_from_lines,
    rating_prompt,
    read_rating,
)
from quanteval.prompts import Sample
from quanteval.rank_agreement import calibration, same_text_agreement
from quanteval.stats import MIN_PAIRS, Interval, mean_interval, spearman
from quanteval.storage import Storage, open_storage
from quanteval.textstats import percentile
from quanteval_worker.checkpoints import Checkpoints, ExpectedCheckpoints
from quanteval_worker.classifier import LoadedClassifier, predict
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines import Engine
from quanteval_worker.engines.base import digit_tokens
from quanteval_worker.events import emit, log
from quanteval_worker.generation import Generation, ResumeFrom, requested_batch
from quanteval_worker.trackers import PhaseTracker, cpu_seconds_used


def with_texts(task: IntensityRun, spec: RunSpec) -> IntensityRun:
    """The task with a textsFrom file's texts read (an s3:// object with the output's endpoint
    and credentials, else a local file); InvalidSpecError names the field when it cannot be."""
    if task.texts_from is None:
        return task
    source = task.texts_from
    parent, _, name = source.rstrip("/").rpartition("/")
    try:
        text = open_storage(parent or ".", spec.s3_endpoint, spec.s3_region).read_text(name)
    except (StorageError, OSError) as error:
        raise InvalidSpecError(f"spec.intensity.textsFrom: cannot read {source}: {error}") from None
    if text is None:
        raise InvalidSpecError(f"spec.intensity.textsFrom: {source} does not exist")
    items = items_from_lines(text, spec.emotions)
    log("intensity texts read", source=source, texts=len(items), sha256=sha256_hex(text))
    return task.model_copy(update={"items": items, "texts_from": None})


def rating_settings(spec: RunSpec, task: IntensityRun) -> GenerationSpec:
    """Greedy, at most the task's new tokens, in the spec's prompt format and batch size."""
    return GenerationSpec(
        preset="greedy",
        prompt_format=spec.generation.prompt_format,
        add_special_tokens=spec.generation.add_special_tokens,
        max_new_tokens=task.max_new_tokens,
        max_length=None,
        batch_size=spec.generation.batch_size,
    )


@dataclass(frozen=True)
class Rated:
    records: list[RatingRecord]  # in the task's order
    seconds: float  # the phase's wall time
    dollars_per_1k: float | None  # its GPU-seconds (GPUs x wall) and CPU-seconds, priced
    expected_seconds: float | None = None  # method expected: the walk's part of `seconds`


INTENSITY: Final = "intensity"  # its answers' batches under partial/


def rating_samples(task: IntensityRun) -> list[Sample]:
    """One greedy request a text: its rating prompt."""
    return [
        Sample(
            prompt_id=i,
            emotion=item.emotion,
            sample_index=0,
            prompt=rating_prompt(task.template, item),
            seed=0,
        )
        for i, item in enumerate(task.items)
    ]


@dataclass(frozen=True)
class IntensityProgress:
    """What earlier attempts finished of the task (read before the model loads, so an outage of
    the store later holds nothing up), and where this attempt keeps its own."""

    answers: Checkpoints
    answered: ResumeFrom | None
    expected: ExpectedCheckpoints
    rated: list[ExpectedRating]


def intensity_progress(storage: Storage, spec: RunSpec, task: IntensityRun) -> IntensityProgress:
    answers = Checkpoints(storage, spec.content_hash, INTENSITY)
    expected = ExpectedCheckpoints(storage, spec.content_hash)
    rated = expected.resume(len(task.items)) if task.method == "expected" else []
    return IntensityProgress(answers, answers.resume(rating_samples(task)), expected, rated)


def rate(
    spec: RunSpec,
    task: IntensityRun,
    engine: Engine,
    tokenizer: Any,
    device: DeviceInfo,
    tracker: PhaseTracker,
    progress: IntensityProgress,
) -> Rated:
    """Every text's answer and rating (phase `intensity`), each batch of answers and each
    twentieth of the expected ratings kept under partial/ as it is done, after what earlier
    attempts finished (`progress`)."""
    samples = rating_samples(task)
    log("rating intensities", texts=len(samples))
    generator = engine.generator(tokenizer, rating_settings(spec, task), device.kind)
    requested = spec.generation.batch_size
    cpu_began = cpu_seconds_used()
    with tracker.phase("intensity"):
        answers, _ = generator.generate_all(
            samples,
            requested_batch(requested, len(samples)),
            lambda done, total: emit("progress", task="intensity", done=done, total=total),
            tracker.memory,
            progress.answered,
            progress.answers.save,
        )
        expected: list[ExpectedRating | None] = [None] * len(samples)
        walked = None
        if task.method == "expected":
            prompts = generator.prompt_ids(samples)
            ratings, walked = expected_ratings(
                engine, tokenizer, prompts, progress.expected, progress.rated
            )
            expected = list(ratings)
    seconds = tracker.seconds["intensity"]
    gpu_seconds = len(device.gpu_names) * seconds
    dollars = run_dollars(gpu_seconds, cpu_seconds_used() - cpu_began, spec.cost)
    records = [
        _record(item, answer, rating)
        for item, answer, rating in zip(task.items, answers, expected, strict=True)
    ]
    return Rated(records, seconds, per_thousand(dollars, len(records)), walked)


def expected_ratings(
    engine: Engine,
    tokenizer: Any,
    prompts: list[list[int]],
    saved: ExpectedCheckpoints,
    done: Sequence[ExpectedRating] = (),
) -> tuple[list[ExpectedRating], float]:
    """Each prompt's expected rating (quanteval.expected_rating) through the engine's walk of
    the number tree, going on after those an earlier attempt saved (`done`; each twentieth saved,
    with the progress), and the seconds this attempt's walk took."""
    began = time.perf_counter()
    ratings = list(done)
    log("expected ratings: walking the number tree", texts=len(prompts), resumed=len(ratings))
    tree = number_tree(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    digits = digit_tokens(tokenizer)
    every = max(1, len(prompts) // 20)  # progress each twentieth, not each text
    for prompt in prompts[len(ratings) :]:
        ratings.append(expected_rating(tree, engine.number_steps(prompt, tree, digits)))
        if len(ratings) % every == 0 or len(ratings) == len(prompts):
            saved.save(ratings, len(prompts))
            emit("progress", task="expected", done=len(ratings), total=len(prompts))
    return ratings, time.perf_counter() - began


def classifier_reference(
    loaded: LoadedClassifier, task: IntensityRun, rated: Rated, cost: CostSpec
) -> tuple[ClassifierReference, list[RatingRecord]]:
    """The texts scored by the classifier (its probability of the named emotion x 100), timed
    like the model's ratings, and the ratings with the classifier's beside them."""
    log("scoring the texts with the classifier", texts=len(task.items))
    began, cpu_began = time.perf_counter(), cpu_seconds_used()
    predictions = predict(loaded.classifier, [item.text for item in task.items])
    seconds, cpu = time.perf_counter() - began, cpu_seconds_used() - cpu_began
    scores = [
        100.0 * p.probabilities.get(item.emotion, 0.0)
        for p, item in zip(predictions, task.items, strict=True)
    ]
    rho, why = _rho(
        [
            (item.level, score)
            for item, score in zip(task.items, scores, strict=True)
            if item.level is not None
        ]
    )
    reference = ClassifierReference(
        classifier=loaded.name,
        device="cpu",  # the worker runs its classifier on the CPU
        texts=len(scores),
        spearman_rho=rho[0] if rho else None,
        spearman_rho_ci95=rho[1] if rho else None,
        spearman_rho_unavailable=why,
        seconds=seconds,
        ratings_per_second=len(scores) / seconds if seconds else 0.0,
        dollars_per_1k_ratings=per_thousand(run_dollars(0.0, cpu, cost), len(scores)),
    )
    records = [
        r.model_copy(update={"classifier_rating": round(score, 3)})
        for r, score in zip(rated.records, scores, strict=True)
    ]
    return reference, records


def _record(
    item: IntensityItem, answer: Generation, expected: ExpectedRating | None = None
) -> RatingRecord:
    """The text's answer and its rating: read from the answer, or (method expected) the
    expected rating, a parse failure where over half its mass is on no number."""
    rating = read_rating(answer.text)
    if expected is not None:  # no number at all: value None, all the mass on no number
        rating = (
            Rating(None, ParseFailure.MOSTLY_NO_NUMBER)
            if expected.non_numeric_mass > 0.5
            else Rating(expected.value)
        )
    return RatingRecord(
        key=item.key,
        emotion=item.emotion,
        text_sha256=sha256_hex(item.text),
        level=item.level,
        gold=item.gold,
        rating=rating.value,
        parse_failure=rating.failure,
        expected=expected.value if expected else None,
        spread=expected.spread if expected else None,
        non_numeric_mass=expected.non_numeric_mass if expected else None,
        answer=answer.text,
        prompt_tokens=answer.prompt_tokens,
        new_tokens=answer.new_tokens,
        latency_ms=round(answer.latency_seconds * 1000, 2),
    )


def ratings_lines(records: list[RatingRecord]) -> str:
    return "".join(r.to_line() + "\n" for r in records)


def _rho(pairs: list[tuple[int, float]]) -> tuple[tuple[float, Interval] | None, str | None]:
    """Spearman's rho of (level, rating) pairs, or why there is none."""
    rho = spearman([level for level, _ in pairs], [rating for _, rating in pairs])
    if rho is not None:
        return rho, None
    ratings = {rating for _, rating in pairs}
    if len(pairs) < MIN_PAIRS:
        return None, f"{len(pairs)} rated texts with an intended level: below {MIN_PAIRS}"
    if len(ratings) == 1:
        return None, f"every rating is {ratings.pop():g}: no rank order"
    return None, "the levels do not vary"


def intensity_figures(
    records: list[RatingRecord],
    seconds: float,
    dollars_per_1k: float | None = None,
    classifier: ClassifierReference | None = None,
    expected_seconds: float | None = None,
) -> IntensityFigures:
    """The run's own figures: parse failures, rank agreement with the intended levels (and the
    error against gold scores), speed and dollars, beside the classifier's."""
    parsed = [r for r in records if r.rating is not None]
    rho, why = _rho(
        [(r.level, r.rating) for r in parsed if r.level is not None and r.rating is not None]
    )
    golden = [r for r in parsed if r.gold is not None]
    errors = [abs((r.rating or 0.0) - (r.gold or 0.0)) for r in golden]
    latencies = [r.latency_ms or 0.0 for r in records]
    same_texts, by_emotion = same_text_agreement(records)
    masses = [r.non_numeric_mass for r in records if r.non_numeric_mass is not None]
    return IntensityFigures(
        texts=len(records),
        parse_failures=len(records) - len(parsed),
        parse_failure_rate=(len(records) - len(parsed)) / len(records) if records else 0.0,
        parse_failures_by_reason=dict(
            Counter(r.parse_failure or "no number" for r in records if r.rating is None)
        ),
        spearman_rho=rho[0] if rho else None,
        spearman_rho_ci95=rho[1] if rho else None,
        spearman_rho_unavailable=why,
        same_texts=same_texts,
        same_texts_by_emotion=by_emotion,
        calibration=calibration(records),
        mae_vs_gold=float(np.mean(errors)) if errors else None,
        mae_vs_gold_ci95=mean_interval(errors) if len(errors) >= 2 else None,
        seconds=seconds,
        ratings_per_second=len(records) / seconds if seconds else 0.0,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        rule=RATING_RULE,
        method="expected" if masses else "greedy",
        non_numeric_mass_mean=float(np.mean(masses)) if masses else None,
        expected_seconds=expected_seconds,
        dollars_per_1k_ratings=dollars_per_1k,
        classifier=classifier,
    )
