"""Exact, seeded, batch- and device-independent sampling, computed on the logits' device.

Each row draws one uniform per step from a counter-based hash of (its sample seed, the step)
(SplitMix64 in int64 tensor arithmetic, which wraps the same way on CPU and CUDA), and turns it
into a token by inverse CDF over the tokens that temperature, top-k and top-p keep, taken in a
canonical order (probability descending, then token id). Nothing goes through the host and
nothing depends on the other rows, so a sample's text is the same at any batch size, and the
same on a CPU and a GPU whenever their filtered distributions agree.

With top-k set, only the k best tokens are sorted (one `topk` over the vocabulary); a tie at the
k-th logit, which transformers' top-k keeps, falls back to the full vocabulary so the kept set is
exactly transformers'.
"""

import torch

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit integer
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB
_STEP_STRIDE = 0xD1B54A32D192ED03  # odd: distinct (seed, step) pairs hash apart


def _signed64(value: int) -> int:
    value %= 2**64
    return value - 2**64 if value >= 2**63 else value


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """A logical right shift of int64 values (torch's >> is arithmetic on signed integers)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def counter_uniform(seeds: torch.Tensor, step: int | torch.Tensor) -> torch.Tensor:
    """One float64 uniform in [0, 1) per row: SplitMix64 of (seed, step), on the seeds' device.
    `step`: the same for every row, or one per row (int64; vLLM's rows are at different steps)."""
    if isinstance(step, torch.Tensor):  # int64 arithmetic wraps: the same sums modulo 2**64
        z = seeds + (step * _signed64(_STEP_STRIDE) + _GOLDEN)
    else:
        z = seeds + _signed64(step * _STEP_STRIDE + _GOLDEN)
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    z = z ^ _shift_right(z, 31)
    return _shift_right(z, 11).to(torch.float64) * 2.0**-53


def _canonical_order(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates sorted by value descending, ties by token id ascending: the same on any device."""
    by_id = ids.argsort(dim=-1)
    values, ids = values.gather(-1, by_id), ids.gather(-1, by_id)
    order = values.argsort(dim=-1, descending=True, stable=True)
    return values.gather(-1, order), ids.gather(-1, order)


def candidates(scores: torch.Tensor, top_k: int, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits top-k keeps and their token ids, in canonical order (all tokens when k is 0,
    in id order when top-p needs no order either)."""
    vocabulary = scores.shape[-1]
    if 0 < top_k < vocabulary:
        values, ids = torch.topk(scores, top_k + 1, dim=-1)
        if not bool((values[:, top_k] == values[:, top_k - 1]).any()):
            return _canonical_order(values[:, :top_k], ids[:, :top_k])
        # A tie at the k-th logit: transformers keeps every tied token. Mask, then take them all.
        kth = values[:, top_k - 1 : top_k]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    ids = torch.arange(vocabulary, device=scores.device).expand_as(scores)
    if top_p >= 1.0:
        return scores, ids
    order = scores.argsort(dim=-1, descending=True, stable=True)
    return scores.gather(-1, order), ids.gather(-1, order)


def sample_tokens(
    scores: torch.Tensor,
    seeds: torch.Tensor,
    step: int | torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
) -> torch.Tensor:
    """One token per row, drawn exactly from the temperature/top-k/top-p distribution.

    `scores`: float logits [rows, vocabulary]; `seeds`: int64 [rows] on the same device.
    """
    values, ids = candidates(scores, top_k, top_p)
    probabilities = (values.to(torch.float64) / temperature).softmax(dim=-1)
    if top_p < 1.0:
        # Drop a token once the mass before it already reaches top_p; the first always stays.
        before = probabilities.cumsum(dim=-1) - probabilities
        probabilities = probabilities.masked_fill(before >= top_p, 0.0)
    cdf = probabilities.cumsum(dim=-1)
    target = counter_uniform(seeds, step) * cdf[:, -1]
    index = torch.searchsorted(cdf, target.unsqueeze(-1), right=True)
    index = index.clamp(max=cdf.shape[-1] - 1)
    return ids.gather(-1, index).squeeze(-1)
