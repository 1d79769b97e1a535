"""Fidelity to the baseline: how far a precision moves the model's next-token distributions.

Every run of a model scores the same reference corpus by teacher forcing (the evaluation's
prompts, each followed by one of the sentences below, in the run's prompt format) and stores, per
position, the most likely tokens until they hold `KEPT_MASS` of the probability, their
log-probabilities, and the log-probability of the corpus's own next token. A run keeps at most
`TOKEN_BUDGET` tokens over all positions, whatever the spec's size: each batch of the corpus its
share by positions (`batch_budget`: a batch is cut as it is scored, so what a run checkpoints is
no larger than what it stores), and within a batch the positions that need few keep all they
need, the rest share what is left evenly (`tokens_per_position`). Runs execute apart,
so the comparison works from what each stored alone. With C the tokens both kept,

    KL(P || Q) >= sum over x in C of p(x) log(p(x) / q(x)) + p(R) log(p(R) / q(R))

where R is every other token. The right side is the exact KL of the two distributions coarsened
to C plus one bin for R, so by the data-processing inequality it is a lower bound, computed from
stored figures only, with no guess at the probability of a token a run did not keep; what it
misses is the KL inside R, which weighs p(R). Each side's mass in R is that of its kept tokens
outside C plus the mass it kept no token of (`rest_logmass`, a log: the worker sums it from the
whole vocabulary's log-softmax in float64 on the device), added in float64. It is not 1 - p(C):
where the top token's float32 log-probability rounds to 0 (a peaked position) that difference
cancels to 0, and q(R) = 0 would make the bound far exceed the KL it bounds. A run stored
without it (results from before it, and vLLM's top-k capped at 1,000 tokens) falls back to
p(R) = 1 - p(C), q(R) = 1 - q(C), q(R) floored at float32's resolution (its eps). A run against
itself gives exactly 0. The README gives the bound against the exact KL of full logits on the
quick start, and the kept mass reached.
"""

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict

from quanteval.stats import CAMEL_CASE, bootstrap

KEPT_MASS: Final = 0.999
TOKEN_BUDGET: Final = 800_000  # tokens a run keeps over all positions: 6 bytes each, ~4.8 MB
MAX_SEQUENCES: Final = 128

# Written by the QuantEval authors for this corpus: affective sentences a model is asked to
# continue the prompts with; the same for every precision, so their token sequences are too.
REFERENCE_SENTENCES: Final = (
    "I slammed the door so hard the pictures rattled, because he had lied to me again.",
    "The smell of the rotten meat in the bin made me gag and turn away.",
    "My heart pounded as the footsteps behind me grew faster in the empty street.",
    "I could not look my sister in the eye after I broke the promise I made her.",
    "We laughed until we cried when the whole family finally sat down together.",
    "The house felt so empty after the funeral that I sat in the dark for hours.",
    "My face burned when the teacher read my clumsy poem aloud to the class.",
    "Nobody asked me before they sold the field where my father taught me to ride.",
    "The waiter wiped his nose on his sleeve and then picked up my bread.",
    "I lay awake listening to every creak of the stairs, sure someone was inside.",
    "I should have visited her in the hospital instead of going to the party.",
    "When the letter said I was accepted, I danced around the kitchen with the dog.",
    "Her old coat still hangs by the door, and I cannot bring myself to move it.",
    "Everyone turned to stare when I tripped on the stage and dropped the trophy.",
    "They cancelled my flight twice and then told me it was my own fault.",
    "The bathroom floor was sticky, and the sink was full of someone's hair.",
    "The doctor paused for a long moment before she told me the results.",
    "I still remember the hurt on his face when I took the credit for his work.",
    "The sun came out just as we reached the top, and the whole valley glowed.",
    "The last message on my phone is from him, and I read it every night.",
    "I wanted the ground to swallow me when my card was declined at the till.",
    "He kept talking over me in the meeting as if I were not even there.",
    "A cockroach ran across my plate just as I lifted the fork to my mouth.",
    "The lights went out, and something brushed against my hand in the dark.",
)


def reference_pairs(prompts: Sequence[str]) -> list[tuple[str, str]]:
    """(prompt, continuation) for each distinct prompt, at most MAX_SEQUENCES."""
    distinct = list(dict.fromkeys(prompts))[:MAX_SEQUENCES]
    return [(p, REFERENCE_SENTENCES[i % len(REFERENCE_SENTENCES)]) for i, p in enumerate(distinct)]


@dataclass(frozen=True)
class TokenDistributions:
    """One run's stored next-token distributions over the reference corpus, by position."""

    vocab_size: int
    sequence: NDArray[np.int32]  # the position's sequence
    target: NDArray[np.int32]  # the corpus's next token there
    target_logprob: NDArray[np.float32]  # its log-probability
    offsets: NDArray[np.int64]  # position i's kept tokens are ids[offsets[i]:offsets[i + 1]]
    ids: NDArray[np.uint16] | NDArray[np.int32]  # kept tokens, most likely first (uint16 when
    # the vocabulary fits)
    logprobs: NDArray[np.float32]
    # log of each position's mass outside its kept tokens (-inf where none is); None where the
    # engine saw only a capped top-k (vLLM) or the file predates it
    rest_logmass: NDArray[np.float64] | None = None

    @property
    def positions(self) -> int:
        return len(self.target)

    def kept_mass(self) -> NDArray[np.float64]:
        """The probability each position's kept tokens hold."""
        probabilities = np.exp(self.logprobs.astype(np.float64))
        sums: NDArray[np.float64] = np.add.reduceat(probabilities, self.offsets[:-1])
        return sums

    def to_bytes(self) -> bytes:
        arrays: dict[str, Any] = {  # Any: numpy's stubs check a ** spread against allow_pickle
            "vocab_size": np.int64(self.vocab_size),
            "sequence": self.sequence,
            "target": self.target,
            "target_logprob": self.target_logprob,
            "offsets": self.offsets,
            "ids": self.ids,
            "logprobs": self.logprobs,
        }
        if self.rest_logmass is not None:
            arrays["rest_logmass"] = self.rest_logmass
        out = io.BytesIO()
        np.savez_compressed(out, **arrays)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "TokenDistributions":
        """A stored run; one stored before `rest_logmass` existed loads with None there."""
        with np.load(io.BytesIO(data)) as f:
            return cls(
                int(f["vocab_size"]),
                f["sequence"],
                f["target"],
                f["target_logprob"],
                f["offsets"],
                f["ids"],
                f["logprobs"],
                f["rest_logmass"] if "rest_logmass" in f.files else None,
            )


def tokens_for_mass(sorted_logprobs: NDArray[Any]) -> int:
    """How many of a position's tokens (most likely first) first hold KEPT_MASS (all if never)."""
    cumulative = np.cumsum(np.exp(sorted_logprobs.astype(np.float64)))
    return min(int(np.searchsorted(cumulative, KEPT_MASS)) + 1, len(sorted_logprobs))


def tokens_per_position(needs: NDArray[np.int64], budget: int) -> int:
    """The largest K with sum(min(need, K)) <= budget: positions that need few tokens keep all
    of them, and the budget left is shared evenly by the rest (water-filling)."""
    low, high = 1, int(needs.max(initial=1))
    while low < high:  # the cost only grows with K: bisect for the last K within budget
        middle = (low + high + 1) // 2
        if int(np.minimum(needs, middle).sum()) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def from_kept_tokens(
    vocab_size: int,
    sequence: NDArray[Any],
    target: NDArray[Any],
    target_logprob: NDArray[Any],
    ids: Sequence[NDArray[Any]],
    logprobs: Sequence[NDArray[Any]],
    budget: int = TOKEN_BUDGET,
    rest_logmass: Sequence[NDArray[Any]] | None = None,
) -> TokenDistributions:
    """Each position's most likely tokens (most likely first, at least until they hold
    KEPT_MASS) cut where they first hold KEPT_MASS, at most `tokens_per_position` of them.

    `rest_logmass`, where the engine saw the whole vocabulary: per position, [j] the log of the
    mass outside its j + 1 most likely tokens; the one after the cut is stored."""
    needs = np.array([tokens_for_mass(lp) for lp in logprobs], dtype=np.int64)
    keep = np.minimum(needs, tokens_per_position(needs, budget))
    kept_ids = np.concatenate([i[:k] for i, k in zip(ids, keep, strict=True)])
    rest = (
        None
        if rest_logmass is None
        else np.array([r[k - 1] for r, k in zip(rest_logmass, keep, strict=True)], np.float64)
    )
    return TokenDistributions(
        vocab_size=vocab_size,
        sequence=sequence.astype(np.int32),
        target=target.astype(np.int32),
        target_logprob=target_logprob.astype(np.float32),
        offsets=np.concatenate([[0], np.cumsum(keep)]).astype(np.int64),
        ids=kept_ids.astype(np.uint16) if vocab_size <= 1 << 16 else kept_ids.astype(np.int32),
        logprobs=np.concatenate([lp[:k] for lp, k in zip(logprobs, keep, strict=True)]).astype(
            np.float32
        ),
        rest_logmass=rest,
    )


def batch_budget(positions: int, total: int, budget: int = TOKEN_BUDGET) -> int:
    """A batch's share of the budget, by its scored positions of the corpus's `total` (at
    least one token a position): the shares sum to at most `budget`."""
    return max(positions, budget * positions // max(total, 1))


def joined(parts: Sequence[TokenDistributions]) -> TokenDistributions:
    """The corpus's distributions from its batches', in order; a rest mass only where every
    batch has one."""
    first = parts[0]
    rests = [p.rest_logmass for p in parts]
    kept = np.concatenate([np.diff(p.offsets) for p in parts])
    return TokenDistributions(
        vocab_size=first.vocab_size,
        sequence=np.concatenate([p.sequence for p in parts]),
        target=np.concatenate([p.target for p in parts]),
        target_logprob=np.concatenate([p.target_logprob for p in parts]),
        offsets=np.concatenate([[0], np.cumsum(kept)]).astype(np.int64),
        ids=np.concatenate([p.ids for p in parts]),
        logprobs=np.concatenate([p.logprobs for p in parts]),
        rest_logmass=None if any(r is None for r in rests) else np.concatenate(rests),  # type: ignore[arg-type]
    )


def _kept(side: TokenDistributions, i: int) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """Position i's kept token ids and their log-probabilities (float64), without the -inf
    entries of a capped top-k that ran short (vLLM runs stored before they were dropped: id 0,
    repeated), so each id is there once."""
    at = slice(side.offsets[i], side.offsets[i + 1])
    logprobs = side.logprobs[at].astype(np.float64)
    finite = np.isfinite(logprobs)
    return side.ids[at][finite], logprobs[finite]


def _outside(
    side: TokenDistributions, i: int, kept: NDArray[np.float64], shared: NDArray[np.intp]
) -> float:
    """One side's mass outside C at position i (`kept` its kept log-probabilities, C at indices
    `shared`): its kept tokens not in C plus its stored rest, summed in float64; 1 - p(C) where
    the rest was not stored."""
    if side.rest_logmass is None:
        return 1.0 - float(np.exp(kept[shared]).sum())
    return float(np.exp(np.delete(kept, shared)).sum() + np.exp(side.rest_logmass[i]))


def position_kl(base: TokenDistributions, run: TokenDistributions) -> NDArray[np.float64]:
    """The lower bound of KL(base || run) at each position (nats), as the module docstring says."""
    # The smallest q(R) believed: float32's resolution where q(R) is 1 - q(C); where it was
    # stored, float64's least normal, which only keeps finite a p(R) > 0 against a q(R) of
    # exactly 0 (an infinite KL).
    q_floor = float(
        np.finfo(np.float32).eps if run.rest_logmass is None else np.finfo(np.float64).tiny
    )
    kl = np.empty(base.positions)
    for i in range(base.positions):
        b_ids, b_lp = _kept(base, i)
        r_ids, r_lq = _kept(run, i)
        _, in_base, in_run = np.intersect1d(b_ids, r_ids, assume_unique=True, return_indices=True)
        lp, lq = b_lp[in_base], r_lq[in_run]
        p_rest = max(_outside(base, i, b_lp, in_base), 0.0)
        q_rest = max(_outside(run, i, r_lq, in_run), q_floor)
        rest = p_rest * np.log(p_rest / q_rest) if p_rest > 0 else 0.0
        kl[i] = max(float(np.sum(np.exp(lp) * (lp - lq))) + rest, 0.0)
    return kl


@dataclass(frozen=True)
class FidelityFigures:
    """A run against its baseline over the reference corpus; intervals resample sequences.

    Also the report's `vsBaseline.fidelity` (camelCase in report.json)."""

    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    sequences: int
    positions: int
    mean_kl: float  # nats per token
    mean_kl_ci95: tuple[float, float]
    p99_kl: float
    p99_kl_ci95: tuple[float, float]
    top1_agreement_pct: float  # the two runs' most likely tokens agree
    top1_agreement_ci95: tuple[float, float]
    perplexity_ratio: float  # the run's perplexity of the corpus / the baseline's
    perplexity_ratio_ci95: tuple[float, float]
    baseline_kept_mass: float  # mean mass of the baseline's kept tokens
    run_kept_mass: float


def compare_fidelity(base: TokenDistributions, run: TokenDistributions) -> FidelityFigures:
    """KL, top-1 agreement and perplexity ratio of `run` against `base`, with 95% intervals
    from a bootstrap over the corpus's sequences (positions within one are not independent).

    Raises ValueError when the two did not score the same token sequences.
    """
    if not np.array_equal(base.target, run.target) or not np.array_equal(
        base.sequence, run.sequence
    ):
        raise ValueError("the runs scored different token sequences (another tokenizer or corpus)")
    kl = position_kl(base, run)
    agree = (base.ids[base.offsets[:-1]] == run.ids[run.offsets[:-1]]).astype(np.float64)
    drop = base.target_logprob.astype(np.float64) - run.target_logprob.astype(np.float64)
    groups = int(base.sequence.max()) + 1 if base.positions else 0
    counts = np.bincount(base.sequence, minlength=groups).astype(np.float64)

    def per_sequence(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        """(the values' sum, positions) per sequence: what a resample of sequences draws."""
        return np.bincount(base.sequence, weights=values, minlength=groups).astype(float), counts

    def mean(total: Any, n: Any, axis: int = -1) -> Any:
        return total.sum(axis=axis) / n.sum(axis=axis)

    by_sequence = [np.flatnonzero(base.sequence == g) for g in range(groups)]

    def p99(chosen: Any) -> float:
        picked = np.concatenate([kl[by_sequence[g]] for g in chosen])
        return float(np.percentile(picked, 99))

    def interval(data: tuple[NDArray[Any], ...], statistic: Any, vectorized: bool = True) -> Any:
        return bootstrap(data, statistic, method="percentile", vectorized=vectorized)[0]

    agree_low, agree_high = interval(per_sequence(agree), mean)
    return FidelityFigures(
        sequences=groups,
        positions=base.positions,
        mean_kl=float(kl.mean()),
        mean_kl_ci95=interval(per_sequence(kl), mean),
        p99_kl=float(np.percentile(kl, 99)),
        p99_kl_ci95=interval((np.arange(groups),), p99, vectorized=False),
        top1_agreement_pct=100 * float(agree.mean()),
        top1_agreement_ci95=(100 * agree_low, 100 * agree_high),
        perplexity_ratio=float(np.exp(drop.mean())),
        perplexity_ratio_ci95=interval(
            per_sequence(drop), lambda t, n, axis=-1: np.exp(mean(t, n, axis))
        ),
        baseline_kept_mass=float(base.kept_mass().mean()),
        run_kept_mass=float(run.kept_mass().mean()),
    )
