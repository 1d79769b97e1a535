"""Batched generation whose every sample is reproducible on its own.

Sampling draws Gumbel noise from a generator seeded per sample and per step, and takes the argmax
of the filtered, noised logits: an exact sample from the top-k/top-p/temperature distribution
whose randomness does not depend on the batch it shares or on the batch size. A per-row budget
enforces `maxLength` (prompt included, as the study counted) inside a batch of mixed lengths.
"""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from quanteval.exitcodes import OutOfMemoryError
from quanteval.prompts import Sample
from quanteval.spec import GenerationSpec

CPU_AUTO_BATCH = 64
CUDA_AUTO_BATCH = 64
_STEP_MIX = 0x9E3779B97F4A7C15


@dataclass(frozen=True)
class Generation:
    sample: Sample
    text: str
    new_tokens: int
    prompt_tokens: int
    batch_seconds: float


def gumbel_noise(seed: int, step: int, size: int) -> torch.Tensor:
    """Standard Gumbel noise of one sample at one step, from its own seeded generator."""
    generator = torch.Generator().manual_seed((seed + step * _STEP_MIX) % 2**63)
    uniform = torch.rand(size, generator=generator, dtype=torch.float64)
    uniform = uniform.clamp(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(uniform)).float()


def filter_logits(
    scores: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), as transformers' warpers order them."""
    scores = scores / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True, dim=-1)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token once the mass before it already reaches top_p; the first always stays.
        drop_sorted = (cumulative - ordered.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


class SeededRowSampler:
    """A logits processor: per-row seeded sampling (or greedy) and per-row token budgets."""

    def __init__(
        self,
        seeds: Sequence[int],
        budgets: Sequence[int],
        prompt_length: int,
        eos_token_id: int,
        spec: GenerationSpec,
    ) -> None:
        self.seeds = list(seeds)
        self.budgets = torch.tensor(list(budgets))
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id
        self.spec = spec

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_length
        scores = scores.float()
        if self.spec.do_sample:
            scores = filter_logits(scores, self.spec.temperature, self.spec.top_k, self.spec.top_p)
            noise = torch.stack([gumbel_noise(s, step, scores.shape[-1]) for s in self.seeds])
            scores = scores + noise.to(scores.device)
        spent = (self.budgets <= step).to(scores.device)
        if bool(spent.any()):
            scores[spent] = float("-inf")
            scores[spent, self.eos_token_id] = 0.0
        return scores


def format_prompt(tokenizer: Any, prompt: str) -> str:
    """The prompt as the model expects it: through its chat template where it has one."""
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return text
    return prompt


def token_budget(prompt_tokens: int, spec: GenerationSpec) -> int:
    budget = spec.max_new_tokens
    if spec.max_length is not None:
        budget = min(budget, spec.max_length - prompt_tokens)
    return max(budget, 1)


def balanced_batch_size(count: int, cap: int) -> int:
    """The smallest even split of `count` into batches of at most `cap` (70 at 64: 2 of 35)."""
    batches = max(1, math.ceil(count / cap))
    return max(1, math.ceil(count / batches))


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


class Generator:
    def __init__(self, model: Any, tokenizer: Any, spec: GenerationSpec, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.device = device
        self.uses_chat_template = bool(getattr(tokenizer, "chat_template", None))
        eos = tokenizer.eos_token_id
        self.eos_token_id: int = eos[0] if isinstance(eos, list) else int(eos)
        self.stop_ids = {self.eos_token_id, int(tokenizer.pad_token_id)}
        generation_config = getattr(model, "generation_config", None)
        extra_eos = getattr(generation_config, "eos_token_id", None)
        if isinstance(extra_eos, int):
            self.stop_ids.add(extra_eos)
        elif isinstance(extra_eos, list):
            self.stop_ids.update(int(e) for e in extra_eos)

    def _input_device(self) -> torch.device:
        return next(self.model.parameters()).device  # type: ignore[no-any-return]

    def generate_batch(self, samples: Sequence[Sample]) -> list[Generation]:
        from transformers import GenerationConfig, LogitsProcessorList

        texts = [format_prompt(self.tokenizer, s.prompt) for s in samples]
        encoded = self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            add_special_tokens=not self.uses_chat_template,
        ).to(self._input_device())
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        budgets = [token_budget(int(n), self.spec) for n in prompt_lengths]
        prompt_length = encoded["input_ids"].shape[1]
        sampler = SeededRowSampler(
            [s.seed for s in samples], budgets, prompt_length, self.eos_token_id, self.spec
        )
        config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=max(budgets),
            eos_token_id=sorted(self.stop_ids),
            pad_token_id=int(self.tokenizer.pad_token_id),
        )
        started = time.perf_counter()
        with torch.no_grad():
            output = self.model.generate(
                **encoded,
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
            )
        if self.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        results = []
        for row, sample in enumerate(samples):
            new = output[row, prompt_length:].tolist()
            count = len(new)
            for position, token in enumerate(new):
                if token in self.stop_ids:
                    count = position + 1
                    break
            text = self.tokenizer.decode(new[:count], skip_special_tokens=True).strip()
            results.append(Generation(sample, text, count, int(prompt_lengths[row]), seconds))
        return results

    def generate_all(
        self,
        samples: Sequence[Sample],
        batch_size: int | None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> tuple[list[Generation], int]:
        """Every sample, in batches of similar prompt length; halves the batch on out-of-memory.

        Returns the generations in the order of `samples` and the batch size that fitted.
        """
        size = batch_size or balanced_batch_size(
            len(samples), CUDA_AUTO_BATCH if self.device == "cuda" else CPU_AUTO_BATCH
        )
        size = max(1, min(size, len(samples)))
        lengths = [
            len(self.tokenizer(format_prompt(self.tokenizer, s.prompt))["input_ids"])
            for s in samples
        ]
        order = sorted(range(len(samples)), key=lambda i: (-lengths[i], i))
        results: dict[int, Generation] = {}
        position = 0
        while position < len(order):
            indices = order[position : position + size]
            try:
                batch = self.generate_batch([samples[i] for i in indices])
            except Exception as error:
                if not _is_oom(error):
                    raise
                if self.device == "cuda":
                    torch.cuda.empty_cache()
                if size == 1:
                    raise OutOfMemoryError(
                        "out of memory generating even one sample at a time; use a lower "
                        "precision, more GPUs (spec.resources.gpus) or a smaller maxLength"
                    ) from error
                size = max(1, size // 2)
                continue
            results.update(zip(indices, batch, strict=True))
            position += len(indices)
            if on_batch is not None:
                on_batch(position, len(order))
        return [results[i] for i in range(len(samples))], size
