"""The intensity task: the model under test rates each text 0-100, greedy, through the same
engine as generation (batches, out-of-memory halving, per-sample timing), with the model loaded
once for every task of the run."""

from typing import Any

import numpy as np

from quanteval.api.records import RatingRecord
from quanteval.api.result import IntensityFigures
from quanteval.api.runspec import IntensityRun, RunSpec
from quanteval.api.spec import GenerationSpec
from quanteval.intensity import parse_rating, rating_prompt
from quanteval.prompts import Sample
from quanteval.stats import MIN_PAIRS, mean_interval, spearman
from quanteval.textstats import percentile
from quanteval_worker.events import emit, log
from quanteval_worker.generation import Generation, Generator
from quanteval_worker.trackers import PhaseTracker

RULE = "the first number in the answer, clamped to 0-100; an answer without one is a parse failure"


def rating_settings(spec: RunSpec, task: IntensityRun) -> GenerationSpec:
    """Greedy, at most the task's new tokens, in the spec's prompt format and batch size."""
    return GenerationSpec(
        preset="greedy",
        prompt_format=spec.generation.prompt_format,
        max_new_tokens=task.max_new_tokens,
        max_length=None,
        batch_size=spec.generation.batch_size,
    )


def rate(
    spec: RunSpec,
    task: IntensityRun,
    model: Any,
    tokenizer: Any,
    device: str,
    tracker: PhaseTracker,
) -> list[RatingRecord]:
    """Every text's answer and rating, in the task's order (phase `intensity`)."""
    samples = [
        Sample(
            prompt_id=i,
            emotion=item.emotion,
            sample_index=0,
            prompt=rating_prompt(task.template, item),
            seed=0,
        )
        for i, item in enumerate(task.items)
    ]
    log("rating intensities", texts=len(samples))
    generator = Generator(model, tokenizer, rating_settings(spec, task), device)
    requested = spec.generation.batch_size
    with tracker.phase("intensity"):
        answers, _ = generator.generate_all(
            samples,
            None if requested == "auto" else requested,
            lambda done, total: emit("progress", task="intensity", done=done, total=total),
            tracker.memory,
        )
    return [_record(item, answer) for item, answer in zip(task.items, answers, strict=True)]


def _record(item: Any, answer: Generation) -> RatingRecord:
    return RatingRecord(
        key=item.key,
        emotion=item.emotion,
        level=item.level,
        gold=item.gold,
        rating=parse_rating(answer.text),
        answer=answer.text,
        prompt_tokens=answer.prompt_tokens,
        new_tokens=answer.new_tokens,
        latency_ms=round(answer.latency_seconds * 1000, 2),
    )


def ratings_lines(records: list[RatingRecord]) -> str:
    return "".join(r.to_line() + "\n" for r in records)


def intensity_figures(records: list[RatingRecord], seconds: float) -> IntensityFigures:
    """The run's own figures: parse failures, rank agreement with the intended levels (and the
    error against gold scores), speed."""
    parsed = [r for r in records if r.rating is not None]
    leveled = [r for r in parsed if r.level is not None]
    rho = spearman([r.level or 0 for r in leveled], [r.rating or 0.0 for r in leveled])
    ratings = {r.rating for r in leveled}
    why = None
    if rho is None:
        why = (
            f"{len(leveled)} rated texts with an intended level: below 10"
            if len(leveled) < MIN_PAIRS
            else f"every rating is {ratings.pop():g}: no rank order"
            if len(ratings) == 1
            else "the levels do not vary"
        )
    golden = [r for r in parsed if r.gold is not None]
    errors = [abs((r.rating or 0.0) - (r.gold or 0.0)) for r in golden]
    latencies = [r.latency_ms or 0.0 for r in records]
    return IntensityFigures(
        texts=len(records),
        parse_failures=len(records) - len(parsed),
        parse_failure_rate=(len(records) - len(parsed)) / len(records) if records else 0.0,
        spearman_rho=rho[0] if rho else None,
        spearman_rho_ci95=rho[1] if rho else None,
        spearman_rho_unavailable=why,
        mae_vs_gold=float(np.mean(errors)) if errors else None,
        mae_vs_gold_ci95=mean_interval(errors) if len(errors) >= 2 else None,
        seconds=seconds,
        ratings_per_second=len(records) / seconds if seconds else 0.0,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        rule=RULE,
    )
