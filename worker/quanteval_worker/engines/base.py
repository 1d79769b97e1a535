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
from quanteval.expected_rating import NumberTree, Step, Tokens
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
    likely first ([positions, k]), and the sequence's own next token's ([positions]).

    `rest`, where the engine saw the whole vocabulary: float64 [positions, k], [:, j] the log of
    the mass outside the j + 1 most likely tokens (-inf where none is left), summed on the device
    so the fidelity bound never takes it as 1 - their float32 sum; None where the engine gives
    only a capped top-k (vLLM)."""

    ids: torch.Tensor
    logprobs: torch.Tensor
    target: torch.Tensor
    rest: torch.Tensor | None = None


def mass_after(ordered: torch.Tensor) -> torch.Tensor:
    """[:, j]: the log of the mass after column j of whole-vocabulary log-probabilities, most
    likely first (-inf after the last); accumulated from the least likely up."""
    tail = ordered.flip(-1).logcumsumexp(-1).flip(-1)  # [:, j]: the mass from column j on
    return torch.cat([tail[:, 1:], torch.full_like(tail[:, :1], float("-inf"))], -1)


NUMBER_BATCH = 32  # prefixes of the number tree a pass, where an engine has no cached walk


def step_of(
    ids: torch.Tensor,
    logprobs: torch.Tensor,
    tree: NumberTree,
    prefix: Tokens,
    digits: torch.Tensor,
) -> Step:
    """One prefix's Step from its next-token log-probabilities (ids and values, any order; a
    capped top-k misses what it left out)."""
    probabilities = logprobs.double().exp()
    wanted = torch.isin(ids, torch.tensor(sorted(tree.after[prefix]), dtype=ids.dtype))
    tokens = dict(zip(ids[wanted].tolist(), probabilities[wanted].tolist(), strict=True))
    digit_mass = float(probabilities[torch.isin(ids, digits.to(ids.device))].sum())
    return Step(tokens, digit_mass)


def digit_tokens(tokenizer: Any) -> torch.Tensor:
    """The ids of the tokens whose text begins with a digit: after a number's tokens, one of
    them would make it another number."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return torch.tensor([i for i, text in enumerate(texts) if text[:1].isdigit()], dtype=torch.long)


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
        log-probability; with the model's vocabulary width (a padded one included).

        In float64: float32 rounds a peaked position's top log-probability to exactly 0."""
        logits = self.sequence_logits(sequences)
        rows = []
        for row, (tokens, begins_at) in enumerate(zip(sequences, begins, strict=True)):
            # Position t predicts token t + 1: the scored tokens are predicted from begins - 1.
            scored = torch.log_softmax(logits[row][begins_at - 1 : len(tokens) - 1].double(), -1)
            ordered, order = scored.sort(dim=-1, descending=True)
            k = min(limit, ordered.shape[-1])
            following = torch.tensor(tokens[begins_at:], device=scored.device)
            target = scored.gather(1, following[:, None])[:, 0]
            rest = mass_after(ordered)[:, :k]
            rows.append(ScoredPositions(order[:, :k], ordered[:, :k].float(), target.float(), rest))
        return int(logits[0].shape[-1]), rows

    def make_resident(self) -> None:  # noqa: B027 - most engines hold their weights already
        """Bring the weights into memory before a phase measures its own growth (weights mapped
        from the checkpoint file are what the model needs, not the phase's)."""

    @abstractmethod
    def close(self) -> None:
        """Drop the model, so its memory can be given back before scoring."""

    def number_steps(
        self, prompt: list[int], tree: NumberTree, digits: torch.Tensor
    ) -> dict[Tokens, Step]:
        """Each prefix of the number tree after `prompt`: the probabilities of the tokens on a
        number's path after it, and the mass of tokens that begin with a digit (`digits`, their
        ids). Here one pass per prefix through next_token_logprobs; an engine that can walk the
        tree from the prompt's cache does so."""
        steps: dict[Tokens, Step] = {}
        for start in range(0, len(tree.prefixes), NUMBER_BATCH):
            chunk = tree.prefixes[start : start + NUMBER_BATCH]
            found = self.next_token_logprobs([prompt + list(p) for p in chunk], None)
            for row, prefix in enumerate(chunk):
                steps[prefix] = step_of(found.ids[row], found.logprobs[row], tree, prefix, digits)
        return steps

    def next_token_logprobs(
        self, prefixes: Sequence[list[int]], top_k: int | None = None
    ) -> NextTokens:
        """Log-probabilities of the next token after each prefix: the `top_k` most likely, or
        the whole vocabulary (None), normalised over the whole vocabulary either way."""
        logprobs = torch.log_softmax(self.last_logits(prefixes).float(), dim=-1)
        k = logprobs.shape[-1] if top_k is None else min(top_k, logprobs.shape[-1])
        values, ids = logprobs.topk(k, dim=-1)
        return NextTokens(ids=ids.cpu(), logprobs=values.cpu())
