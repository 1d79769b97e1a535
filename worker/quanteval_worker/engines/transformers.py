"""transformers' AutoModelForCausalLM at a precision strategy's settings (the study's method)."""

import copy
import importlib.metadata
import inspect
from collections.abc import Sequence
from typing import Any

import torch

from quanteval.api.spec import GenerationSpec
from quanteval.expected_rating import NumberTree, Step, Tokens
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines.base import TRANSFORMERS, Engine, EngineInfo, Loaded, step_of
from quanteval_worker.generation import Generator
from quanteval_worker.loading import load_causal_lm, quantization_settings
from quanteval_worker.precisions import PrecisionStrategy
from quanteval_worker.sources import ResolvedSource
from quanteval_worker.weights import actual_dtypes, touch_weights, weights_bytes


class TransformersEngine(Engine):
    def __init__(self, model: Any) -> None:
        self.model = model
        self.info = EngineInfo(TRANSFORMERS, importlib.metadata.version("transformers"))
        settings = quantization_settings(model)
        self.loaded = Loaded(weights_bytes(model), actual_dtypes(model), settings)

    @classmethod
    def load(
        cls,
        source: ResolvedSource,
        strategy: PrecisionStrategy,
        device: DeviceInfo,
        max_memory: dict[int | str, str] | None,
    ) -> "TransformersEngine":
        return cls(load_causal_lm(source, strategy, device, max_memory))

    def generator(self, tokenizer: Any, spec: GenerationSpec, device: str) -> Generator:
        return Generator(self.model, tokenizer, spec, device)

    def _forward(self, batch: Sequence[list[int]]) -> torch.Tensor:
        """The logits of one right-padded forward pass (positions stay where they are)."""
        device = next(self.model.parameters()).device
        width = max(len(tokens) for tokens in batch)
        input_ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, tokens in enumerate(batch):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        with torch.no_grad():
            output = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
        logits: torch.Tensor = output.logits
        return logits

    def number_steps(
        self, prompt: list[int], tree: NumberTree, digits: torch.Tensor
    ) -> dict[Tokens, Step]:
        """The number tree walked from the prompt's cache: the prompt once, then each depth as
        one batch of one token a prefix, over its parents' rows of the cache before it."""
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
        last: dict[Tokens, torch.Tensor] = {(): out.logits[0, -1]}
        level: list[Tokens] = [()]  # the prefixes of the depth before, and their cache
        cache = out.past_key_values
        for depth in range(1, max(len(p) for p in tree.prefixes) + 1):
            group = [p for p in tree.prefixes if len(p) == depth]
            cache = copy.deepcopy(cache)
            parents = [level.index(p[:-1]) for p in group]
            cache.batch_select_indices(torch.tensor(parents, device=device))
            with torch.no_grad():
                logits = self.model(
                    input_ids=torch.tensor([[p[-1]] for p in group], device=device),
                    **{self._cache_argument: cache},
                ).logits[:, -1]
            last.update(zip(group, logits, strict=True))
            level = group
        vocabulary = torch.arange(out.logits.shape[-1])
        return {
            p: step_of(vocabulary, torch.log_softmax(last[p].double(), -1).cpu(), tree, p, digits)
            for p in tree.prefixes
        }

    @property
    def _cache_argument(self) -> str:
        """How forward takes a cache: `cache` from transformers 5.24 (`past_key_values`, which
        older versions take, is deprecated there)."""
        parameters = inspect.signature(self.model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def sequence_logits(self, sequences: Sequence[list[int]]) -> list[torch.Tensor]:
        logits = self._forward(sequences)
        return [logits[row, : len(tokens)] for row, tokens in enumerate(sequences)]

    def last_logits(self, prefixes: Sequence[list[int]]) -> torch.Tensor:
        logits = self._forward(prefixes)
        last = torch.tensor([len(tokens) - 1 for tokens in prefixes], device=logits.device)
        return logits[torch.arange(len(prefixes), device=logits.device), last]

    def make_resident(self) -> None:
        touch_weights(self.model)

    def close(self) -> None:
        self.model = None
