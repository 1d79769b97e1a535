"""How far a run's generations moved from its baseline's: ROUGE and intensity drift, per sample."""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from statistics import fmean
from typing import Any

from quanteval.api.records import SampleRecord
from quanteval.api.states import RunState
from quanteval.report.data import RunRecord
from quanteval.report.schema import NoiseFloor

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
Pair = tuple[SampleRecord, SampleRecord]  # (the baseline's generation, the run's)


@dataclass(frozen=True)
class RougeMeans:
    rouge1: float
    rouge2: float
    rouge_l: float


def pair_by_sample(baseline: Sequence[SampleRecord], run: Sequence[SampleRecord]) -> list[Pair]:
    """Records of the same sample (prompt id, emotion, sample index) answering the same prompt
    in both, in run order; a sample whose prompt changed is not a pair."""
    base = {g.sample_key: g for g in baseline}
    return [
        (base[g.sample_key], g)
        for g in run
        if g.sample_key in base and base[g.sample_key].prompt_digest == g.prompt_digest
    ]


@cache
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_f(reference: str, text: str) -> tuple[float, float, float]:
    """ROUGE-1/2/L F-measure of `text` against `reference` (rouge-score, Porter stemmer).

    Identical texts score 1.0 even when rouge-score finds no token in them (it keeps only
    a-z and 0-9: a text of emoji has none, and would score 0 against itself).
    """
    if reference == text:
        return (1.0, 1.0, 1.0)
    scores = _scorer().score(reference, text)
    return (scores["rouge1"].fmeasure, scores["rouge2"].fmeasure, scores["rougeL"].fmeasure)


def rouge_means(pairs: Sequence[Pair]) -> RougeMeans | None:
    """Mean ROUGE-1/2/L F-measure of each run text against its baseline text; None if no pair."""
    if not pairs:
        return None
    scores = [rouge_f(base.text, run.text) for base, run in pairs]
    return RougeMeans(
        rouge1=fmean(s[0] for s in scores),
        rouge2=fmean(s[1] for s in scores),
        rouge_l=fmean(s[2] for s in scores),
    )


def intensity_drift(pairs: Sequence[Pair]) -> float | None:
    """Mean absolute change of the intended emotion's probability, in points (0-100 scale)."""
    if not pairs:
        return None
    return fmean(abs(run.intensity - base.intensity) for base, run in pairs)


def seed_half_pairs(generations: Sequence[SampleRecord]) -> list[Pair]:
    """A run's own samples of the same prompt and emotion, paired two by two (sample index 0
    with 1, 2 with 3, ...): texts that differ only in their seeds, for an A/A floor."""
    by_key = {(g.prompt_id, g.emotion, g.sample_index): g for g in generations}
    return [
        (g, partner)
        for g in generations
        if g.sample_index % 2 == 0
        and (partner := by_key.get((g.prompt_id, g.emotion, g.sample_index + 1))) is not None
        and partner.prompt_digest == g.prompt_digest
    ]


def noise_floor(base: RunRecord, repeat: RunRecord | None) -> NoiseFloor | None:
    """ROUGE and intensity drift of the baseline against itself with other seeds: against its
    replicate where one succeeded (every sample), else its samples' seed halves (needs
    samplesPerPrompt >= 2); None when neither exists."""
    if repeat is not None and repeat.state == RunState.SUCCEEDED:
        pairs = pair_by_sample(base.generations, repeat.generations)
        source = f"{base.run_id} against its replicate {repeat.run_id}"
    else:
        pairs = seed_half_pairs(base.generations)
        source = f"{base.run_id}'s samples 0 against 1 (2 against 3, ...) of each prompt"
    rouge, drift = rouge_means(pairs), intensity_drift(pairs)
    if rouge is None or drift is None:
        return None
    return NoiseFloor(source, len(pairs), rouge.rouge1, rouge.rouge2, rouge.rouge_l, drift)
