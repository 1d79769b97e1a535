"""The fidelity estimator against the exact KL of known distributions."""

import io
from itertools import pairwise

import numpy as np
import pytest

from quanteval.fidelity import (
    KEPT_MASS,
    TokenDistributions,
    batch_budget,
    compare_fidelity,
    from_kept_tokens,
    joined,
    position_kl,
    reference_pairs,
    tokens_per_position,
)

VOCAB = 2000


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return result


def _mass_after(top: np.ndarray) -> np.ndarray:
    """What the worker stores beside log-probabilities most likely first: [:, j] the log of the
    mass after the j + 1 most likely (engines/base.py's, in float64)."""
    tail = np.logaddexp.accumulate(top[:, ::-1], axis=1)[:, ::-1]
    return np.concatenate([tail[:, 1:], np.full((len(top), 1), -np.inf)], axis=1)


def _stored(
    logprobs: np.ndarray,
    targets: np.ndarray,
    sequence: np.ndarray,
    budget: int = 10**6,
    rest: bool = True,
) -> TokenDistributions:
    """What a run stores of full distributions: its top tokens, cut at KEPT_MASS, and (`rest`)
    the log of the mass outside them, as the worker stores it; without, as vLLM's runs and older
    files are stored."""
    order = np.argsort(-logprobs, axis=1)
    top = np.take_along_axis(logprobs, order, axis=1)
    rows = np.arange(len(targets))
    target_lp = logprobs[rows, targets].astype(np.float32)
    return from_kept_tokens(
        logprobs.shape[1],
        sequence,
        targets,
        target_lp,
        list(order),
        list(top),
        budget,
        rest_logmass=list(_mass_after(top)) if rest else None,
    )


def _corpus(seed: int, positions: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((positions, VOCAB)) * 6  # peaked, like a language model's
    targets = rng.integers(0, VOCAB, positions)
    sequence = np.repeat(np.arange(positions // 20), 20)
    return logits, targets, sequence


def test_a_run_against_itself_gives_zero_kl_and_full_agreement() -> None:
    logits, targets, sequence = _corpus(1)
    stored = _stored(_log_softmax(logits), targets, sequence)
    again = TokenDistributions.from_bytes(stored.to_bytes())
    assert again.rest_logmass is not None and stored.rest_logmass is not None
    assert np.array_equal(again.rest_logmass, stored.rest_logmass)
    figures = compare_fidelity(stored, again)
    assert figures.mean_kl == 0 and figures.p99_kl == 0
    assert figures.top1_agreement_pct == 100 and figures.perplexity_ratio == 1
    assert figures.mean_kl_ci95 == (0.0, 0.0)
    assert figures.baseline_kept_mass >= KEPT_MASS


def test_the_estimate_is_a_close_lower_bound_of_the_exact_kl() -> None:
    logits, targets, sequence = _corpus(2)
    noise = np.random.default_rng(3).standard_normal(logits.shape) * 0.5  # a perturbed precision
    p, q = _log_softmax(logits), _log_softmax(logits + noise)
    exact = (np.exp(p) * (p - q)).sum(axis=1)
    estimate = position_kl(_stored(p, targets, sequence), _stored(q, targets, sequence))
    assert np.all(estimate <= exact + 1e-9)  # a lower bound at every position
    assert estimate.mean() == pytest.approx(exact.mean(), rel=0.02)
    figures = compare_fidelity(_stored(p, targets, sequence), _stored(q, targets, sequence))
    assert figures.mean_kl_ci95[0] <= estimate.mean() <= figures.mean_kl_ci95[1]
    rows = np.arange(len(targets))
    true_ratio = np.exp((p[rows, targets] - q[rows, targets]).mean())
    assert figures.perplexity_ratio == pytest.approx(true_ratio, rel=1e-5)
    agree = (p.argmax(axis=1) == q.argmax(axis=1)).mean()
    assert figures.top1_agreement_pct == pytest.approx(100 * agree)


def test_a_position_where_float32_saturates_still_gets_a_lower_bound() -> None:
    """The run's top token 25 logits above the rest: float32's log_softmax gives it exactly 0, so
    1 - q(C) reads q(R) = 0. The rest mass summed in float64 keeps the bound below the exact KL
    and close to it; a run stored without it (older files, vLLM) floors q(R) at float32's
    resolution and stays below too (floored at 1e-300 it read 5.6 nats against 0.115)."""
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((20, 50))
    base = logits.copy()
    base[:, 0] += 10  # peaked, 98-99.9% on the top token, which float32 still resolves
    run = logits + rng.standard_normal(logits.shape) * 0.3
    run[:, 0] = logits[:, 0] + 25
    run32 = _log_softmax(run.astype(np.float32))
    assert np.all(run32[:, 0] == 0.0)  # saturated
    p, q = _log_softmax(base), _log_softmax(run)
    exact = (np.exp(p) * (p - q)).sum(axis=1)
    targets = rng.integers(0, 50, 20)
    sequence = np.repeat(np.arange(4), 5)
    estimate = position_kl(_stored(p, targets, sequence), _stored(q, targets, sequence))
    assert np.all(estimate <= exact + 1e-9) and np.all(estimate >= 0.99 * exact)
    base32 = _log_softmax(base.astype(np.float32)).astype(np.float64)
    floored = position_kl(
        _stored(base32, targets, sequence, rest=False),
        _stored(run32.astype(np.float64), targets, sequence, rest=False),
    )
    assert np.all(floored <= exact + 1e-9)


def test_a_file_stored_before_the_rest_mass_loads_and_compares() -> None:
    logits, targets, sequence = _corpus(9)
    p = _log_softmax(logits)
    q = _log_softmax(logits + np.random.default_rng(10).standard_normal(logits.shape) * 0.5)
    before = _stored(q, targets, sequence, rest=False)
    out = io.BytesIO()
    fields = ("sequence", "target", "target_logprob", "offsets", "ids", "logprobs")
    np.savez_compressed(
        out, vocab_size=np.int64(VOCAB), **{f: getattr(before, f) for f in fields}
    )  # the file as the worker wrote it before
    old = TokenDistributions.from_bytes(out.getvalue())
    assert old.rest_logmass is None
    assert compare_fidelity(old, old).mean_kl == 0
    new = _stored(p, targets, sequence)
    exact = (np.exp(p) * (p - q)).sum(axis=1)
    estimate = position_kl(new, old)
    assert np.all(estimate <= exact + 1e-9)
    assert estimate.mean() == pytest.approx(exact.mean(), rel=0.02)
    assert compare_fidelity(new, old).mean_kl == pytest.approx(estimate.mean())


def test_more_damage_gives_more_kl() -> None:
    logits, targets, sequence = _corpus(4)
    rng = np.random.default_rng(5)
    base = _stored(_log_softmax(logits), targets, sequence)
    small, large = (
        compare_fidelity(
            base,
            _stored(
                _log_softmax(logits + rng.standard_normal(logits.shape) * s), targets, sequence
            ),
        )
        for s in (0.2, 1.0)
    )
    assert small.mean_kl_ci95[1] < large.mean_kl_ci95[0]
    assert small.top1_agreement_pct > large.top1_agreement_pct


def test_different_token_sequences_are_refused() -> None:
    logits, targets, sequence = _corpus(6)
    p = _log_softmax(logits)
    with pytest.raises(ValueError, match="different token sequences"):
        compare_fidelity(_stored(p, targets, sequence), _stored(p, (targets + 1) % VOCAB, sequence))


def test_the_corpus_pairs_each_distinct_prompt_with_a_sentence() -> None:
    pairs = reference_pairs(["a", "b", "a", "c"])
    assert [p for p, _ in pairs] == ["a", "b", "c"]
    assert len({s for _, s in pairs}) == 3


def test_the_token_budget_is_shared_by_water_filling() -> None:
    needs = np.array([1, 2, 100, 100])
    assert tokens_per_position(needs, 53) == 25  # 1 + 2 + 25 + 25
    assert tokens_per_position(needs, 1000) == 100  # within budget: every position all it needs
    assert tokens_per_position(needs, 2) == 1  # never below one token a position


def test_a_run_keeps_at_most_its_budget_and_the_flattest_positions_give_way() -> None:
    logits, targets, sequence = _corpus(7)
    logits[:10] *= 0.05  # ten nearly uniform positions: each needs most of the vocabulary
    p = _log_softmax(logits)
    unlimited = _stored(p, targets, sequence)
    needs = np.diff(unlimited.offsets)
    budget = int(needs[10:].sum()) + 10 * 500  # room for 500 tokens at each flat position
    capped = _stored(p, targets, sequence, budget)
    kept = np.diff(capped.offsets)
    assert kept.sum() <= budget < needs.sum()
    assert np.array_equal(kept[10:], needs[10:])  # the peaked positions keep all they need
    assert kept[:10].min() >= 500
    assert capped.kept_mass()[:10].max() < KEPT_MASS <= capped.kept_mass()[10:].min()
    assert capped.ids.dtype == np.uint16  # a vocabulary under 65,536 ids: two bytes a token
    again = TokenDistributions.from_bytes(capped.to_bytes())
    assert compare_fidelity(capped, again).mean_kl == 0


def test_each_batch_keeps_its_share_of_the_budget_and_the_batches_join_into_the_run() -> None:
    """The worker cuts each batch as it scores it (a checkpoint no larger than its part of the
    file): the shares sum to the budget at most, a batch of flat positions gives way inside its
    share, and the joined batches are the run (its bound against itself 0)."""
    logits, targets, sequence = _corpus(9)
    logits[:20] *= 0.05  # the first batch's positions nearly uniform
    p = _log_softmax(logits)
    budget = 40_000
    shares = [batch_budget(100, 400, budget) for _ in range(4)]
    assert shares == [10_000] * 4 and batch_budget(1, 10**9, budget) == 1  # a token at least
    parts = [
        _stored(p[at : at + 100], targets[at : at + 100], sequence[at : at + 100], share)
        for at, share in zip(range(0, 400, 100), shares, strict=True)
    ]
    kept = [int(np.diff(part.offsets).sum()) for part in parts]
    assert (
        kept[0]
        <= shares[0]
        < int(np.diff(_stored(p[:100], targets[:100], sequence[:100]).offsets).sum())
    )
    run = joined(parts)
    assert run.positions == 400 and int(np.diff(run.offsets).sum()) == sum(kept) <= budget
    assert np.array_equal(run.sequence, sequence) and run.rest_logmass is not None
    assert compare_fidelity(run, TokenDistributions.from_bytes(run.to_bytes())).mean_kl == 0
    assert (
        joined([parts[0], _stored(p[100:], targets[100:], sequence[100:], rest=False)]).rest_logmass
        is None
    )


def test_a_capped_top_k_that_ran_short_compares_as_if_its_padding_were_not_there() -> None:
    """A vLLM run stored before its -inf padding was dropped: a position's last entries are id 0
    at -inf, repeated. The bound reads as without them (it crashed, and before that read other
    positions' log-probabilities)."""
    logits, targets, sequence = _corpus(4, positions=40)
    p = _log_softmax(logits)
    q = _log_softmax(logits + np.random.default_rng(5).standard_normal(logits.shape) * 0.5)
    base, run = _stored(p, targets, sequence), _stored(q, targets, sequence, rest=False)
    offsets = run.offsets
    pad = 3
    ids = np.concatenate(
        [np.r_[run.ids[a:b], np.zeros(pad, run.ids.dtype)] for a, b in pairwise(offsets)]
    )
    logprobs = np.concatenate(
        [np.r_[run.logprobs[a:b], np.full(pad, -np.inf, np.float32)] for a, b in pairwise(offsets)]
    )
    padded = TokenDistributions(
        run.vocab_size, run.sequence, run.target, run.target_logprob,
        np.r_[0, np.cumsum(np.diff(offsets) + pad)], ids, logprobs,
    )  # fmt: skip
    assert np.array_equal(position_kl(base, padded), position_kl(base, run))
