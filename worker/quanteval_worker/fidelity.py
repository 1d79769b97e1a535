"""The fidelity pass: one teacher-forced pass over the reference corpus (quanteval.fidelity).

Each sequence is a prompt as the model receives it (the run's prompt format) followed by a
reference sentence; only the sentence's tokens are scored, so every precision of a model scores
exactly the same token sequences.
"""

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from quanteval.api.spec import GenerationSpec
from quanteval.fidelity import (
    KEPT_MASS,
    TOKEN_BUDGET,
    TokenDistributions,
    from_kept_tokens,
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


@dataclass(frozen=True)
class ScoredBatch:
    """One batch of the corpus scored: per position, its kept tokens and their log-probabilities
    (and the log of the mass outside them, where the engine gives it); per sequence, its scored
    tokens, their log-probabilities and the sequence's index. A checkpoint's unit."""

    vocab: int
    ids: list[NDArray[Any]]
    logprobs: list[NDArray[Any]]
    rests: list[NDArray[Any]]
    targets: list[NDArray[Any]]
    target_lp: list[NDArray[Any]]
    which: list[NDArray[Any]]

    def to_bytes(self) -> bytes:
        parts: dict[str, NDArray[Any]] = {"vocab": np.asarray(self.vocab)}
        for name in ("ids", "logprobs", "rests", "targets", "target_lp", "which"):
            arrays: list[NDArray[Any]] = getattr(self, name)
            parts[f"{name}_lengths"] = np.asarray([len(a) for a in arrays], dtype=np.int64)
            parts[name] = np.concatenate(arrays) if arrays else np.zeros(0)
        buffer = io.BytesIO()
        np.savez(buffer, **parts)  # type: ignore[arg-type]  # numpy types **kwds as allow_pickle
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ScoredBatch":
        with np.load(io.BytesIO(data)) as parts:

            def split(name: str) -> list[NDArray[Any]]:
                lengths = parts[f"{name}_lengths"]
                return list(np.split(parts[name], np.cumsum(lengths)[:-1])) if len(lengths) else []

            return cls(
                int(parts["vocab"]), split("ids"), split("logprobs"), split("rests"),
                split("targets"), split("target_lp"), split("which"),
            )  # fmt: skip


def score_batch(engine: Engine, batch: Sequence[tuple[list[int], int]], start: int) -> ScoredBatch:
    """The sequences `start`.. of the corpus, from the engine's teacher-forced
    log-probabilities."""
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
        kept = min(int(needs.max()), TOKEN_BUDGET, positions.ids.shape[-1])
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
    return ScoredBatch(vocab, ids, logprobs, rests, targets, target_lp, which)


def score_reference(
    engine: Engine,
    sequences: Sequence[tuple[list[int], int]],
    done: Sequence[ScoredBatch] = (),
    on_batch: Callable[[int, ScoredBatch], None] | None = None,
) -> TokenDistributions:
    """Each scored position's most likely tokens and the corpus token's log-probability, from
    the engine's teacher-forced log-probabilities; with the log of the mass outside them where
    the engine summed it over the whole vocabulary (every position's, or none stored).
    `done`: the first batches, scored by an earlier attempt; `on_batch` hears of each batch
    this one scores (its index, for partial/)."""
    batches = list(done)
    for index, start in enumerate(range(0, len(sequences), BATCH)):
        if index < len(batches):
            continue
        batch = score_batch(engine, sequences[start : start + BATCH], start)
        batches.append(batch)
        if on_batch is not None:
            on_batch(index, batch)
    ids = [a for b in batches for a in b.ids]
    rests = [a for b in batches for a in b.rests]
    return from_kept_tokens(
        batches[0].vocab if batches else 0,
        np.concatenate([a for b in batches for a in b.which]),
        np.concatenate([a for b in batches for a in b.targets]),
        np.concatenate([a for b in batches for a in b.target_lp]),
        ids,
        [a for b in batches for a in b.logprobs],
        rest_logmass=rests if len(rests) == len(ids) else None,
    )
