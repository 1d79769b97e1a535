"""The study's claim, checked on the data.

Claim: a larger model quantized to a lower precision beats a smaller model at a higher precision
when both need similar memory. Every (larger model, smaller model) pair, sized by parameters (from
any succeeded run of each), and every (larger's run at a lower precision, smaller's run at a
higher one) whose peak memories are within 25% of each other is one comparison. Each is settled by
the paired bootstrap interval of the macro-F1 difference over the samples both generated: above 0
supports the claim, below 0 contradicts it, across 0 is not settled by this data; the claim as a
whole is supported when some comparisons support it and none contradicts it (and the other way
round), else not settled.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from quanteval.api.records import SampleRecord
from quanteval.precisions import BYTES_PER_PARAMETER, Precision
from quanteval.report.schema import ClaimCheck, ClaimComparison
from quanteval.report.uncertainty import compare_generations

CLAIM = (
    "a larger model at a lower precision beats a smaller model at a higher precision "
    "at similar memory"
)
SIMILAR_MEMORY_TOLERANCE = 0.25
NO_PAIR = "no pair at similar memory"
SUPPORTED, CONTRADICTED, UNSETTLED = "supported", "contradicted", "not settled by this data"


@dataclass(frozen=True)
class ClaimRun:
    run_id: str
    model: str
    precision: Precision
    f1: float
    peak_memory_bytes: int
    generations: tuple[SampleRecord, ...] = ()
    emotions: tuple[str, ...] = ()


Interval = tuple[float, float]


def similar_memory(a: int, b: int, tolerance: float = SIMILAR_MEMORY_TOLERANCE) -> bool:
    """Whether the larger of two peaks is at most `tolerance` above the smaller."""
    low, high = sorted((a, b))
    return low > 0 and high <= (1 + tolerance) * low


def _lower_precision(a: Precision, b: Precision) -> bool:
    """Whether `a` stores fewer bits a weight than `b` (bf16 and fp16 are neither's lower; a
    native checkpoint's bits are its own, so it is never known to be lower)."""
    size_a, size_b = BYTES_PER_PARAMETER.get(a), BYTES_PER_PARAMETER.get(b)
    return size_a is not None and size_b is not None and size_a < size_b


def verdict(supported: int, contradicted: int, total: int) -> str:
    """The claim on this data, with its counts."""
    if not total:
        return NO_PAIR
    if supported and not contradicted:
        overall = SUPPORTED
    elif contradicted and not supported:
        overall = CONTRADICTED
    else:
        overall = UNSETTLED
    noun = "comparison" if total == 1 else "comparisons"
    return (
        f"{overall}: of {total} {noun} at similar memory, {supported} support it, "
        f"{contradicted} contradict it, {total - supported - contradicted} not settled"
    )


def _settle(larger: ClaimRun, smaller: ClaimRun) -> tuple[int, float | None, Interval | None, str]:
    """Pairs, the paired ΔF1 (larger - smaller) and its interval, and the outcome."""
    emotions = smaller.emotions or larger.emotions
    pairs, _, paired = compare_generations(smaller.generations, larger.generations, emotions)
    if paired is None:
        return pairs, None, None, UNSETTLED
    low, high = paired.delta_f1_ci95_pp
    outcome = SUPPORTED if low > 0 else CONTRADICTED if high < 0 else UNSETTLED
    return pairs, paired.delta_f1_pp, paired.delta_f1_ci95_pp, outcome


def check_claim(
    runs: Sequence[ClaimRun],
    model_sizes: Mapping[str, int],
    models: Sequence[str],
    tolerance: float = SIMILAR_MEMORY_TOLERANCE,
) -> ClaimCheck:
    """`runs`: succeeded runs; `model_sizes`: each model's parameters; `models`: every model of
    the evaluation (those without a size are reported as left out)."""
    by_size = sorted(model_sizes, key=lambda m: (-model_sizes[m], m))
    comparisons = []
    for larger in by_size:
        for smaller in by_size:
            if model_sizes[larger] <= model_sizes[smaller]:
                continue
            for a in (r for r in runs if r.model == larger):
                for b in (r for r in runs if r.model == smaller):
                    if not _lower_precision(a.precision, b.precision):
                        continue
                    if not similar_memory(a.peak_memory_bytes, b.peak_memory_bytes, tolerance):
                        continue
                    pairs, delta, ci, outcome = _settle(a, b)
                    comparisons.append(
                        ClaimComparison(
                            larger_run_id=a.run_id,
                            larger_f1=a.f1,
                            larger_peak_memory_bytes=a.peak_memory_bytes,
                            smaller_run_id=b.run_id,
                            smaller_f1=b.f1,
                            smaller_peak_memory_bytes=b.peak_memory_bytes,
                            memory_ratio=a.peak_memory_bytes / b.peak_memory_bytes,
                            larger_wins=a.f1 > b.f1,
                            pairs=pairs,
                            delta_f1_pp=delta,
                            ci95=ci,
                            outcome=outcome,
                        )
                    )
    wins = sum(c.larger_wins for c in comparisons)
    supported = sum(c.outcome == SUPPORTED for c in comparisons)
    contradicted = sum(c.outcome == CONTRADICTED for c in comparisons)
    return ClaimCheck(
        claim=CLAIM,
        similar_memory=f"peak memories within {tolerance:.0%} of each other",
        comparisons=tuple(comparisons),
        wins=wins,
        verdict=verdict(supported, contradicted, len(comparisons)),
        models_by_size=tuple(by_size),
        models_left_out=tuple(m for m in dict.fromkeys(models) if m not in model_sizes),
        supported=supported,
        contradicted=contradicted,
    )
