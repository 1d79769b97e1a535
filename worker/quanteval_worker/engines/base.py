"""What every engine does for a run, whatever computes the logits (after lm-eval's `LM` and
optimum-benchmark's `Backend`): load at a precision, say what it loaded, generate a batch of
samples with our seeds and timings, score token sequences, and give next-token log-probabilities.

The phases (evaluation.py, fidelity.py, intensity.py) call this interface only; which engine runs
is decided once, in prepare (engines.choose_engine).
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from quanteval.api.spec import GenerationSpec
from quanteval_worker.generation import Generator

TRANSFORMERS = "transformers"
LLAMA_CPP = "llama.cpp"
VLLM = "vllm"


@dataclass(frozen=True)
class Loaded:
    """What the loaded model is, measured: its weights as held, and how they were quantized."""

    weights_bytes: int
    dtypes: dict[str, int]  # parameters (or a GGUF's weights) per stored type
    quantization: dict[str, Any]  # the method's settings as loaded


@dataclass(frozen=True)
class EngineInfo:
    """The engine itself, as result.json records it (`environment.engine`)."""

    name: str  # "transformers", "llama.cpp"
    version: str
    # Whether a prompt's logits are the same whatever batch it shares: False where measured not
    # to be (llama.cpp), None where not established.
    batch_invariant: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the engine's own (threads, ...)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.batch_invariant is not None:
            record["batchInvariant"] = self.batch_invariant
        return record | self.settings


@dataclass(frozen=True)
class NextTokens:
    """Next-token log-probabilities after each prefix, most likely first: [prefixes, k]."""

    ids: torch.Tensor  # int64
    logprobs: torch.Tensor  # float32, normalised over the model's whole vocabulary


@dataclass(frozen=True)
class ScoredPositions:
    """One sequence's scored positions: the most likely tokens' ids and log-probabilities, most
    likely first ([positions, k]), and the sequence's own next token's ([positions])."""

    ids: torch.Tensor
    logprobs: torch.Tensor
    target: torch.Tensor


class Engine(ABC):
    """A model loaded by one engine; `close` frees it."""

    info: EngineInfo
    loaded: Loaded

    @abstractmethod
    def generator(self, tokenizer: Any, spec: GenerationSpec, device: str) -> Generator:
        """Batches of samples, each drawn with its own seed, timed per sample; also the greedy
        answers of the intensity task (a greedy spec)."""

    @abstractmethod
    def sequence_logits(self, sequences: Sequence[list[int]]) -> list[torch.Tensor]:
        """Teacher-forced logits at every position of each sequence, [length, vocabulary]."""

    @abstractmethod
    def last_logits(self, prefixes: Sequence[list[int]]) -> torch.Tensor:
        """The logits after the last token of each prefix, [prefixes, vocabulary]."""

    @property
    def resident_bytes(self) -> int:
        """What the model holds in memory to serve: its weights, and a KV cache an engine
        reserves up front (vLLM's budget); a phase's peak is this and the phase's own growth."""
        return self.loaded.weights_bytes

    def top_logprobs(
        self, sequences: Sequence[list[int]], begins: Sequence[int], limit: int
    ) -> tuple[int, list[ScoredPositions]]:
        """Teacher-forced, for each sequence, at each position that predicts one of its tokens
        from `begins` on: the `limit` most likely tokens and the sequence's own token's
        log-probability; with the model's vocabulary width (a padded one included)."""
        logits = self.sequence_logits(sequences)
        rows = []
        for row, (tokens, begins_at) in enumerate(zip(sequences, begins, strict=True)):
            # Position t predicts token t + 1: the scored tokens are predicted from begins - 1.
            scored = torch.log_softmax(logits[row][begins_at - 1 : len(tokens) - 1].float(), -1)
            ordered, order = scored.sort(dim=-1, descending=True)
            k = min(limit, ordered.shape[-1])
            following = torch.tensor(tokens[begins_at:], device=scored.device)
            target = scored.gather(1, following[:, None])[:, 0]
            rows.append(ScoredPositions(order[:, :k], ordered[:, :k], target))
        return int(logits[0].shape[-1]), rows

    def make_resident(self) -> None:  # noqa: B027 - most engines hold their weights already
        """Bring the weights into memory before a phase measures its own growth (weights mapped
        from the checkpoint file are what the model needs, not the phase's)."""

    @abstractmethod
    def close(self) -> None:
        """Drop the model, so its memory can be given back before scoring."""

    def next_token_logprobs(
        self, prefixes: Sequence[list[int]], top_k: int | None = None
    ) -> NextTokens:
        """Log-probabilities of the next token after each prefix: the `top_k` most likely, or
        the whole vocabulary (None), normalised over the whole vocabulary either way."""
        logprobs = torch.log_softmax(self.last_logits(prefixes).float(), dim=-1)
        k = logprobs.shape[-1] if top_k is None else min(top_k, logprobs.shape[-1])
        values, ids = logprobs.topk(k, dim=-1)
        return NextTokens(ids=ids.cpu(), logprobs=values.cpu())
