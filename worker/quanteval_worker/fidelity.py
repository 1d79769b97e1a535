"""The fidelity pass: one teacher-forced pass over the reference corpus (quanteval.fidelity).

Each sequence is a prompt as the model receives it (the run's prompt format) followed by a
reference sentence; only the sentence's tokens are scored, so every precision of a model scores
exactly the same token sequences.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

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
    tokenizer: Any, samples: Sequence[Sample], prompt_format: str
) -> list[tuple[list[int], int]]:
    """(token ids, where the sentence begins) for each distinct prompt of the run."""
    sequences = []
    for prompt, sentence in reference_pairs([s.prompt for s in samples]):
        text = format_prompt(tokenizer, prompt, prompt_format)
        head = list(encode_prompts(tokenizer, [text], prompt_format)["input_ids"][0])
        # Encoded apart and joined, so no token spans the boundary and the split is exact.
        tail = tokenizer(" " + sentence.strip(), add_special_tokens=False)["input_ids"]
        sequences.append(([int(t) for t in head + list(tail)], len(head)))
    return sequences


def score_reference(
    engine: Engine, sequences: Sequence[tuple[list[int], int]]
) -> TokenDistributions:
    """Each scored position's most likely tokens and the corpus token's log-probability, from
    the engine's teacher-forced logits."""
    vocab = 0
    ids, logprobs, targets, target_lp, which = [], [], [], [], []
    for start in range(0, len(sequences), BATCH):
        batch = sequences[start : start + BATCH]
        logits = engine.sequence_logits([tokens for tokens, _ in batch])
        vocab = int(logits[0].shape[-1])  # the model's own width (a padded vocabulary included)
        for row, (tokens, begins) in enumerate(batch):
            # Position t predicts token t + 1: the sentence's tokens are predicted from begins - 1.
            scored = torch.log_softmax(logits[row][begins - 1 : len(tokens) - 1].float(), dim=-1)
            ordered, order = scored.sort(dim=-1, descending=True)
            # Enough of each position for KEPT_MASS (from_kept_tokens cuts it to the budget).
            needs = (ordered.exp().cumsum(dim=-1) < KEPT_MASS).sum(dim=-1) + 1
            kept = min(int(needs.max()), TOKEN_BUDGET, vocab)
            top_ids, top_lp = order[:, :kept].cpu().numpy(), ordered[:, :kept].cpu().numpy()
            for position, need in enumerate(needs.clamp(max=kept).tolist()):
                ids.append(top_ids[position, :need].astype(np.int32))
                logprobs.append(top_lp[position, :need].copy())
            next_tokens = torch.tensor(tokens[begins:], device=scored.device)
            targets.append(next_tokens.cpu().numpy())
            target_lp.append(scored.gather(1, next_tokens[:, None])[:, 0].cpu().numpy())
            which.append(np.full(len(next_tokens), start + row, dtype=np.int32))
        del logits
    return from_kept_tokens(
        vocab,
        np.concatenate(which),
        np.concatenate(targets),
        np.concatenate(target_lp),
        ids,
        logprobs,
    )
