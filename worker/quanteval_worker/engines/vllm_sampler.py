"""Our seeded sampler inside vLLM: a V1 logits processor that picks each of our rows' token.

vLLM's own sampler then decodes greedily (temperature 0) over logits whose only finite entry is
our token, so a vLLM run draws from the same filtered distribution with the same per-sample
seeds as a transformers run (quanteval_worker.sampling). Rows are at different steps in vLLM's
persistent batch: each row's step is the length of its output so far.
"""

from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from quanteval_worker.sampling import sample_tokens

ARGS_KEY = "quanteval"  # SamplingParams.extra_args[ARGS_KEY]: the row's seed and settings


def sampling_args(
    seed: int, do_sample: bool, temperature: float, top_k: int, top_p: float
) -> dict[str, Any]:
    """SamplingParams.extra_args for one of our rows."""
    return {ARGS_KEY: {"seed": seed, "sample": do_sample, "t": temperature, "k": top_k, "p": top_p}}


class SeededSampler(LogitsProcessor):
    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        # batch index -> (the row's settings, its output token ids as vLLM appends them)
        self.rows: dict[int, tuple[dict[str, Any], list[int]]] = {}

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        args = (sampling_params.extra_args or {}).get(ARGS_KEY)
        if args is not None and sampling_params.temperature != 0.0:
            raise ValueError("our rows decode greedily over the token this processor picks")

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, params, _prompt, output in batch_update.added:
            args = (params.extra_args or {}).get(ARGS_KEY) if params is not None else None
            if args is None:
                self.rows.pop(index, None)
            else:
                self.rows[index] = (args, output)
        for first, second, direction in batch_update.moved:
            a, b = self.rows.pop(first, None), self.rows.pop(second, None)
            if a is not None:
                self.rows[second] = a
            if b is not None and direction == MoveDirectionality.SWAP:
                self.rows[first] = b

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        groups: dict[tuple[bool, float, int, float], list[int]] = {}
        for index, (args, _) in self.rows.items():
            groups.setdefault((args["sample"], args["t"], args["k"], args["p"]), []).append(index)
        for (sample, temperature, top_k, top_p), indices in groups.items():
            rows = torch.tensor(indices, device=logits.device)
            scores = logits.index_select(0, rows).float()
            if sample:
                seeds = [self.rows[i][0]["seed"] for i in indices]
                steps = [len(self.rows[i][1]) for i in indices]
                tokens = sample_tokens(
                    scores,
                    torch.tensor(seeds, dtype=torch.int64, device=logits.device),
                    torch.tensor(steps, dtype=torch.int64, device=logits.device),
                    temperature,
                    top_k,
                    top_p,
                )
            else:
                tokens = scores.argmax(dim=-1)
            chosen = torch.full_like(scores, float("-inf"))
            chosen.scatter_(-1, tokens.unsqueeze(-1), 0.0)
            logits.index_copy_(0, rows, chosen.to(logits.dtype))
        return logits
