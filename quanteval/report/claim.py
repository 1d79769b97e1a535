"""The study's claim, checked on the data.

Claim: a larger model quantized to a lower precision beats a smaller model at a higher precision
when both need similar memory. Every (larger model, smaller model) pair, sized by weights at their
baseline precision, and every (larger's run at a lower precision, smaller's run at a higher one)
whose peak memories are within 25% of each other is one comparison; the larger model wins it with a
strictly higher macro-F1.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from quanteval.precisions import BYTES_PER_PARAMETER, Precision
from quanteval.report.schema import ClaimCheck, ClaimComparison

CLAIM = (
    "a larger model at a lower precision beats a smaller model at a higher precision "
    "at similar memory"
)
SIMILAR_MEMORY_TOLERANCE = 0.25
NO_PAIR = "no pair at similar memory"


@dataclass(frozen=True)
class ClaimRun:
    run_id: str
    model: str
    precision: Precision
    f1: float
    peak_memory_bytes: int


def similar_memory(a: int, b: int, tolerance: float = SIMILAR_MEMORY_TOLERANCE) -> bool:
    """Whether the larger of two peaks is at most `tolerance` above the smaller."""
    low, high = sorted((a, b))
    return low > 0 and high <= (1 + tolerance) * low


def _lower_precision(a: Precision, b: Precision) -> bool:
    """Whether `a` stores fewer bits a weight than `b` (bf16 and fp16 are neither's lower)."""
    return BYTES_PER_PARAMETER[a] < BYTES_PER_PARAMETER[b]


def verdict(wins: int, total: int) -> str:
    if not total:
        return NO_PAIR
    noun = "comparison" if total == 1 else "comparisons"
    return f"larger model at lower precision wins {wins} of {total} {noun} at similar memory"


def check_claim(
    runs: Sequence[ClaimRun],
    model_sizes: Mapping[str, int],
    models: Sequence[str],
    tolerance: float = SIMILAR_MEMORY_TOLERANCE,
) -> ClaimCheck:
    """`runs`: succeeded runs; `model_sizes`: weights bytes at each model's baseline precision;
    `models`: every model of the evaluation (those without a size are reported as left out)."""
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
                        )
                    )
    wins = sum(c.larger_wins for c in comparisons)
    return ClaimCheck(
        claim=CLAIM,
        similar_memory=f"peak memories within {tolerance:.0%} of each other",
        comparisons=tuple(comparisons),
        wins=wins,
        verdict=verdict(wins, len(comparisons)),
        models_by_size=tuple(by_size),
        models_left_out=tuple(m for m in dict.fromkeys(models) if m not in model_sizes),
    )
