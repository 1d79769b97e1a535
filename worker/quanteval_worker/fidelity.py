"""The fidelity pass: one teacher-forced pass over the reference corpus (quanteval.fidelity).

Each sequence is a prompt as the model receives it (the run's prompt format) followed by a
reference sentence; only the sentence's tokens are scored, so every precision of a model scores
exactly the same token sequences.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from quanteval.api.spec import GenerationSpec
from quanteval.fidelity import (
    KEPT_MASS,
    TOKEN_BUDGET,
    TokenDistributions,
    batch_budget,
    from_kept_tokens,
    joined,
    reference_pairs,
)
from quanteval.prompts import Sample
from quanteval_worker.engines import Engine
from quanteval_worker.generation import encode_prompts, format_prompt

BATCH = 8  # sequences a forward pass: the logits of 8 x ~60 positions x the vocabulary


def reference_sequences(
    tokenizer: Any, samples: Sequence[Sample], generation: GenerationSpec
) -> list[tuple[list[int], int]]:
    """(token ids, where the sentence begins) for each distinct prompt of the run."""
    sequences = []
    for prompt, sentence in reference_pairs([s.prompt for s in samples]):
        text = format_prompt(tokenizer, prompt, generation.prompt_format)
        head = list(encode_prompts(tokenizer, [text], generation)["input_ids"][0])
        # Encoded apart and joined, so no token spans the boundary and the split is exact.
        tail = tokenizer(" " + sentence.strip(), add_special_tokens=False)["input_ids"]
        sequences.append(([int(t) for t in head + list(tail)], len(head)))
    return sequences


def score_batch(
    engine: Engine, batch: Sequence[tuple[list[int], int]], start: int, budget: int
) -> TokenDistributions:
    """The sequences `start`.. of the corpus, from the engine's teacher-forced
    log-probabilities, each position cut as the stored file keeps it, within the batch's
    `budget` of tokens: a checkpoint's unit, no larger than its part of the file."""
    ids: list[NDArray[Any]] = []
    logprobs: list[NDArray[Any]] = []
    rests: list[NDArray[Any]] = []
    targets, target_lp, which = [], [], []
    vocab, scored = engine.top_logprobs(
        [tokens for tokens, _ in batch], [begins for _, begins in batch], TOKEN_BUDGET
    )
    for row, ((tokens, begins), positions) in enumerate(zip(batch, scored, strict=True)):
        # Enough of each position for KEPT_MASS (from_kept_tokens cuts it to the budget).
        needs = (positions.logprobs.exp().cumsum(dim=-1) < KEPT_MASS).sum(dim=-1) + 1
        # A capped top-k (vLLM) may list fewer tokens than asked: its -inf padding is none.
        needs = needs.minimum(positions.logprobs.isfinite().sum(dim=-1).clamp(min=1))
        kept = min(int(needs.max()), budget, positions.ids.shape[-1])
        cut = list(enumerate(needs.clamp(max=kept).tolist()))
        top_ids = positions.ids[:, :kept].cpu().numpy()
        top_lp = positions.logprobs[:, :kept].cpu().numpy()
        ids.extend(top_ids[position, :need].astype(np.int32) for position, need in cut)
        logprobs.extend(top_lp[position, :need].copy() for position, need in cut)
        if positions.rest is not None:
            top_rest = positions.rest[:, :kept].cpu().numpy()
            rests.extend(top_rest[position, :need].copy() for position, need in cut)
        targets.append(np.asarray(tokens[begins:], dtype=np.int64))
        target_lp.append(positions.target.cpu().numpy())
        which.append(np.full(len(tokens) - begins, start + row, dtype=np.int32))
    return from_kept_tokens(
        vocab, np.concatenate(which), np.concatenate(targets), np.concatenate(target_lp),
        ids, logprobs, budget, rest_logmass=rests if len(rests) == len(ids) else None,
    )  # fmt: skip


def score_reference(
    engine: Engine,
    sequences: Sequence[tuple[list[int], int]],
    done: Sequence[TokenDistributions] = (),
    on_batch: Callable[[int, TokenDistributions], None] | None = None,
) -> TokenDistributions:
    """Each scored position's most likely tokens and the corpus token's log-probability, from
    the engine's teacher-forced log-probabilities; with the log of the mass outside them where
    the engine summed it over the whole vocabulary (every position's, or none stored).
    `done`: the first batches, scored by an earlier attempt; `on_batch` hears of each batch
    this one scores (its index, for partial/)."""
    scored = [len(tokens) - begins for tokens, begins in sequences]
    batches = list(done)
    for index, start in enumerate(range(0, len(sequences), BATCH)):
        if index < len(batches):
            continue
        budget = batch_budget(sum(scored[start : start + BATCH]), sum(scored))
        batch = score_batch(engine, sequences[start : start + BATCH], start, budget)
        batches.append(batch)
        if on_batch is not None:
            on_batch(index, batch)
    return joined(batches)
