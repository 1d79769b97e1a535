"""The study's claim, checked on the data.

Claim: a larger model quantized to a lower precision beats a smaller model at a higher precision
when both need similar memory. Every (larger model, smaller model) pair, sized by parameters (from
any succeeded run of each), and every (larger's run at a lower precision, smaller's run at a
higher one) whose peak memories are within 25% of each other, and like for like (the same device,
engine as it ran and KV budget: quanteval.comparison.unlike), is one comparison. The k comparisons
are one family: each is settled by the template-level interval (quanteval.templates) of the
macro-F1 difference over the samples both generated, at 1 - 0.05/k, with the template permutation
test at 0.05/k: an interval above 0 supports the claim and one below 0 contradicts it where the
test agrees (else, and across 0, it is not settled by this data); the claim as a whole is supported
when some comparisons support it and none contradicts it (and the other way round), else not
settled.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from quanteval.api.records import SampleRecord
from quanteval.comparison import Terms, unlike
from quanteval.engines import Engine
from quanteval.power import ALPHA
from quanteval.precisions import BYTES_PER_PARAMETER, Precision
from quanteval.report.schema import ClaimCheck, ClaimComparison
from quanteval.report.uncertainty import compare_generations
from quanteval.templates import TemplateDelta, family_confidence

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
    engine: Engine = Engine.AUTO
    terms: Terms = field(default_factory=Terms)  # what its figures were measured on (unlike)


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


def _outcome(difference: TemplateDelta, ci: Interval, family_size: int) -> str:
    """Settled only where the interval excludes 0 and the permutation test rejects at
    alpha / k (Bonferroni, as the interval's level), as a verdict is."""
    if (ci[0] > 0 or ci[1] < 0) and family_size * difference.flip_p < ALPHA:
        return SUPPORTED if ci[0] > 0 else CONTRADICTED
    return UNSETTLED


def settle_claims(
    differences: Sequence[TemplateDelta | None],
) -> tuple[list[tuple[Interval | None, str]], int, float]:
    """Each comparison's interval and outcome, settled together: the template-level intervals at
    1 - 0.05/k for the k comparisons that could be made; with k and that level."""
    k = sum(d is not None for d in differences)
    confidence = family_confidence(k)
    settled: list[tuple[Interval | None, str]] = []
    for d in differences:
        if d is None:
            settled.append((None, UNSETTLED))
            continue
        ci = d.interval(confidence)
        settled.append((ci, _outcome(d, ci, k)))
    return settled, k, confidence


def _settled(
    candidates: Sequence[tuple[ClaimRun, ClaimRun]],
) -> tuple[list[ClaimComparison], int, float]:
    """Each (larger, smaller) pair's comparison, settled together (settle_claims)."""
    paired = [
        compare_generations(b.generations, a.generations, b.emotions or a.emotions)
        for a, b in candidates
    ]
    settled, k, confidence = settle_claims([c.primary if c else None for _, _, c in paired])
    comparisons = []
    for (a, b), (pairs, _, c), (ci, outcome) in zip(candidates, paired, settled, strict=True):
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
                delta_f1_pp=c.delta_f1_pp if c is not None else None,
                templates=c.templates if c is not None else None,
                ci95=c.primary.interval(0.95) if c is not None else None,
                ci=ci,
                outcome=outcome,
            )
        )
    return comparisons, k, confidence


def check_claim(
    runs: Sequence[ClaimRun],
    model_sizes: Mapping[str, int],
    models: Sequence[str],
    tolerance: float = SIMILAR_MEMORY_TOLERANCE,
) -> ClaimCheck:
    """`runs`: succeeded runs; `model_sizes`: each model's parameters; `models`: every model of
    the evaluation (those without a size are reported as left out)."""
    by_size = sorted(model_sizes, key=lambda m: (-model_sizes[m], m))
    candidates = [
        (a, b)
        for larger in by_size
        for smaller in by_size
        if model_sizes[larger] > model_sizes[smaller]
        for a in runs
        if a.model == larger
        for b in runs
        if b.model == smaller
        and _lower_precision(a.precision, b.precision)
        and unlike(a.terms, b.terms) is None
        and similar_memory(a.peak_memory_bytes, b.peak_memory_bytes, tolerance)
    ]
    comparisons, family_size, confidence = _settled(candidates)
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
        family_size=family_size,
        confidence=confidence if family_size else None,
    )
