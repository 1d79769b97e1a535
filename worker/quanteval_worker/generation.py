"""Batched generation that does exactly what the spec says, and whose every sample is reproducible.

Each row's token is drawn on the logits' device from a counter of (its sample seed, the step)
(`sampling.py`): an exact sample from the temperature/top-k/top-p distribution whose randomness
does not depend on the batch it shares or on the batch size. A per-row budget
enforces `maxLength` (prompt included, as the study counted) inside a batch of mixed lengths.

Nothing of the model's own `generation_config.json` reaches sampling (transformers would fill
every setting we leave unset from it: Qwen2.5's repetition penalty, a do_sample default): the
model runs under a config built from the spec alone, and what it would have added is recorded.
"""

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from quanteval.api.errors import CannotLoadError, InvalidSpecError, OutOfMemoryError
from quanteval.api.result import GenerationSettings
from quanteval.api.spec import GenerationSpec
from quanteval.prompts import Sample, chat_message
from quanteval_worker.loading import is_out_of_memory
from quanteval_worker.sampling import sample_tokens

CPU_AUTO_BATCH = 64
CUDA_AUTO_BATCH = 64


# Generation-config keys that change no token: token ids (the stop tokens are ours to collect),
# output switches and bookkeeping.
_NOT_SAMPLING = frozenset(
    {
        "bos_token_id", "eos_token_id", "pad_token_id", "transformers_version", "use_cache",
        "output_attentions", "output_hidden_states", "output_scores", "return_dict_in_generate",
    }
)  # fmt: skip


@dataclass(frozen=True)
class BatchTiming:
    """One batch's wall times: prefill (to the first token's logits), then decode (the rest)."""

    index: int
    prefill_seconds: float
    decode_seconds: float


@dataclass(frozen=True)
class Generation:
    sample: Sample
    text: str
    new_tokens: int  # generated tokens, the end-of-sequence token not counted
    prompt_tokens: int
    batch: BatchTiming
    ttft_seconds: float  # the batch's start to this sample's first token
    tpot_seconds: float | None  # first to last token, per token after the first (None below 2)
    latency_seconds: float  # the batch's start to this sample's own end of sequence

    @property
    def decode_tokens(self) -> int:
        """Tokens produced by decode steps: all but the first, which prefill produced."""
        return max(self.new_tokens - 1, 0)


def row_timing(
    marks: Sequence[float], start: float, new_tokens: int, ended: bool
) -> tuple[float, float | None, float]:
    """TTFT, TPOT and latency of one row from the step marks (mark i: token i+1's logits ready).

    A row that ended with end of sequence finished when that token was chosen (mark new_tokens);
    one cut at its budget or at maxNewTokens, when its last token was (mark new_tokens - 1).
    """
    last = len(marks) - 1
    ttft = marks[0] - start
    tpot = (
        (marks[min(new_tokens - 1, last)] - marks[0]) / (new_tokens - 1) if new_tokens > 1 else None
    )
    finish = min(new_tokens if ended else max(new_tokens - 1, 0), last)
    return ttft, tpot, marks[finish] - start


class StepClock:
    """A timestamp each time a step's logits are ready, and one at the start of the batch.

    On a GPU each mark follows a device sync: the logits really exist then. transformers'
    generate() syncs every step anyway (to see whether every sequence has finished), so the
    extra sync costs nothing measurable.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.start = 0.0
        self.marks: list[float] = []

    def _now(self, on: torch.device | None = None) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize(on)
        return time.perf_counter()

    def begin(self) -> None:
        self.start = self._now()
        self.marks = []

    def mark(self, on: torch.device) -> None:
        self.marks.append(self._now(on))

    def end(self) -> float:
        return self._now()


class SeededRowSampler:
    """A logits processor that picks each row's token itself: seeded sampling (or greedy) on
    the logits' device, and per-row token budgets. It returns logits whose only finite entry is
    the chosen token, so generate()'s own greedy step takes exactly that token."""

    def __init__(
        self,
        seeds: Sequence[int],
        budgets: Sequence[int],
        prompt_length: int,
        eos_token_id: int,
        spec: GenerationSpec,
        clock: StepClock | None = None,
    ) -> None:
        self.seed_list = list(seeds)
        self.budget_list = list(budgets)
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id
        self.spec = spec
        self.clock = clock
        self._on: torch.device | None = None

    def _to(self, device: torch.device) -> None:
        if self._on != device:
            self.seeds = torch.tensor(self.seed_list, dtype=torch.int64, device=device)
            self.budgets = torch.tensor(self.budget_list, dtype=torch.int64, device=device)
            self._on = device

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.clock is not None:
            self.clock.mark(scores.device)
        self._to(scores.device)
        step = input_ids.shape[1] - self.prompt_length
        scores = scores.float()
        if self.spec.do_sample:
            tokens = sample_tokens(
                scores, self.seeds, step, self.spec.temperature, self.spec.top_k, self.spec.top_p
            )
        else:
            tokens = scores.argmax(dim=-1)
        tokens = torch.where(self.budgets <= step, self.eos_token_id, tokens)
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(-1, tokens.unsqueeze(-1), 0.0)


def check_prompt_format(tokenizer: Any, spec: GenerationSpec, location: str) -> None:
    """promptFormat chat needs a chat template: fail before the model loads if there is none."""
    if spec.prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise CannotLoadError(
            f"{location}: generation.promptFormat is chat, but the tokenizer has no chat "
            "template; use promptFormat: raw"
        )


def format_prompt(tokenizer: Any, prompt: str, prompt_format: str) -> str:
    """chat: the prompt as a user message through the chat template (without surrounding
    whitespace: `chat_message`); raw: the bare prompt, byte for byte."""
    if prompt_format == "chat":
        text: str = tokenizer.apply_chat_template(
            [{"role": "user", "content": chat_message(prompt)}],
            add_generation_prompt=True,
            tokenize=False,
        )
        return text
    return prompt


def encode_prompts(tokenizer: Any, texts: list[str], spec: GenerationSpec, **kwargs: Any) -> Any:
    """Token ids as the model receives them: a raw prompt with the tokenizer's own special tokens
    (BOS for Llama) where generation.addSpecialTokens says so (the paper preset: none, as the
    study's pipeline encoded it); a chat template already holds them."""
    return tokenizer(texts, add_special_tokens=spec.special_tokens, **kwargs)


def token_budget(prompt_tokens: int, spec: GenerationSpec) -> int:
    """New tokens a sample may generate: what maxLength leaves after its prompt, capped by
    maxNewTokens. Validated beforehand to be at least 1 (`check_prompt_lengths`)."""
    budgets = []
    if spec.max_new_tokens is not None:
        budgets.append(spec.max_new_tokens)
    if spec.max_length is not None:
        budgets.append(spec.max_length - prompt_tokens)
    return min(budgets)


def requested_batch(batch_size: int | str, samples: int) -> int | None:
    """generate_all's batch size for the spec's batchSize: continuous submits every sample at
    once (vLLM schedules them), auto leaves it to the device (None)."""
    if batch_size == "continuous":
        return samples
    return batch_size if isinstance(batch_size, int) else None


def balanced_batch_size(count: int, cap: int) -> int:
    """The smallest even split of `count` into batches of at most `cap` (70 at 64: 2 of 35)."""
    batches = max(1, math.ceil(count / cap))
    return max(1, math.ceil(count / batches))


def prompt_lengths(tokenizer: Any, samples: Sequence[Sample], spec: GenerationSpec) -> list[int]:
    """Each sample's prompt length in tokens, as the model receives it."""
    texts = [format_prompt(tokenizer, s.prompt, spec.prompt_format) for s in samples]
    return [len(ids) for ids in encode_prompts(tokenizer, texts, spec)["input_ids"]]


def check_prompt_lengths(
    lengths: Sequence[int], samples: Sequence[Sample], spec: GenerationSpec
) -> None:
    """A prompt that leaves no room under maxLength: a spec error, found before the model loads."""
    if spec.max_length is None:
        return
    for length, sample in zip(lengths, samples, strict=True):
        if length >= spec.max_length:
            raise InvalidSpecError(
                f"generation.maxLength: {spec.max_length} leaves no room for new tokens after the "
                f"prompt {sample.prompt!r} ({length} tokens as the model receives it, "
                f"promptFormat {spec.prompt_format}); raise maxLength"
            )


def eos_token_id(tokenizer: Any) -> int:
    """The tokenizer's end of sequence (the first, where it names several)."""
    eos = tokenizer.eos_token_id
    return int(eos[0]) if isinstance(eos, list) else int(eos)


def stop_token_ids(tokenizer: Any, model: Any) -> list[int]:
    """The tokenizer's end of sequence and padding, and the model's own end-of-turn tokens."""
    ids = {eos_token_id(tokenizer), int(tokenizer.pad_token_id)}
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(extra, int):
        ids.add(extra)
    elif isinstance(extra, list):
        ids.update(int(e) for e in extra)
    return sorted(ids)


def model_generation_defaults(model: Any) -> dict[str, Any]:
    """What the model's generation_config.json sets beyond token ids: recorded, never applied."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return {}
    diff: dict[str, Any] = config.to_diff_dict()
    return {
        k: v for k, v in sorted(diff.items()) if k not in _NOT_SAMPLING and not k.startswith("_")
    }


@dataclass(frozen=True)
class ResumeFrom:
    """Where earlier attempts of a run stopped (quanteval_worker.checkpoints): the order their
    batches took the samples in (keys), the batch size in force, their finished batches' count
    and what those generated, by sample key."""

    order: list[str]
    size: int
    batches: int
    finished: Mapping[str, Generation]


# A finished batch: its index, its generations, the batches' order (sample keys), the size in force.
BatchDone = Callable[[int, list["Generation"], list[str], int], None]


class Attempts(Protocol):
    """Told of each generation attempt begun and of each that failed (the MemoryMeter)."""

    def begin_attempt(self) -> None: ...

    def discard_attempt(self) -> None: ...


class Generator:
    def __init__(self, model: Any, tokenizer: Any, spec: GenerationSpec, device: str) -> None:
        from transformers import GenerationConfig

        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.device = device
        self.stop_ids = stop_token_ids(tokenizer, model)
        self.eos_token_id = eos_token_id(tokenizer)
        self.ignored_model_defaults = model_generation_defaults(model)
        self._blank_config = GenerationConfig()

    def timing(self) -> dict[str, Any] | None:
        """How the per-sample timings were taken, where not by this process's step clock."""
        return None

    def settings(self, batch_size: int, continuous: bool = False) -> GenerationSettings:
        """Every generation setting in force, as result.json records it."""
        spec = self.spec
        return GenerationSettings(
            prompt_format=spec.prompt_format,
            special_tokens_added=spec.special_tokens,
            do_sample=spec.do_sample,
            temperature=spec.temperature if spec.do_sample else None,
            top_k=spec.top_k if spec.do_sample else None,
            top_p=spec.top_p if spec.do_sample else None,
            max_length=spec.max_length,
            max_new_tokens=spec.max_new_tokens,
            samples_per_prompt=spec.samples_per_prompt,
            seed=spec.seed,
            batch_size=batch_size,
            stop_token_ids=self.stop_ids,
            model_defaults_ignored=self.ignored_model_defaults,
            batching="continuous" if continuous else "fixed",
            timing=self.timing(),
        )

    def prompt_ids(self, samples: Sequence[Sample]) -> list[list[int]]:
        """Each sample's prompt as the token ids the model receives (engines fed ids, unpadded)."""
        fmt = self.spec.prompt_format
        texts = [format_prompt(self.tokenizer, s.prompt, fmt) for s in samples]
        return [
            [int(t) for t in ids]
            for ids in encode_prompts(self.tokenizer, texts, self.spec)["input_ids"]
        ]

    def _input_device(self) -> torch.device:
        return next(self.model.parameters()).device  # type: ignore[no-any-return]

    def generate_batch(self, samples: Sequence[Sample], index: int = 0) -> list[Generation]:
        from transformers import GenerationConfig, LogitsProcessorList

        texts = [format_prompt(self.tokenizer, s.prompt, self.spec.prompt_format) for s in samples]
        encoded = encode_prompts(
            self.tokenizer, texts, self.spec, return_tensors="pt", padding=True
        ).to(self._input_device())
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        budgets = [token_budget(int(n), self.spec) for n in prompt_lengths]
        prompt_length = encoded["input_ids"].shape[1]
        clock = StepClock(self.device)
        sampler = SeededRowSampler(
            [s.seed for s in samples], budgets, prompt_length, self.eos_token_id, self.spec, clock
        )
        config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            use_cache=True,
            max_new_tokens=max(budgets),
            eos_token_id=self.stop_ids,
            pad_token_id=int(self.tokenizer.pad_token_id),
        )
        clock.begin()
        # generate() fills every setting left unset from the model's generation config: it sees
        # an empty one, so the only settings in force are the ones passed here.
        own_config = self.model.generation_config
        self.model.generation_config = self._blank_config
        try:
            with torch.no_grad():
                output = self.model.generate(
                    **encoded,
                    generation_config=config,
                    logits_processor=LogitsProcessorList([sampler]),
                )
        finally:
            self.model.generation_config = own_config
        ended_at = clock.end()
        timing = BatchTiming(index, clock.marks[0] - clock.start, ended_at - clock.marks[0])
        results = []
        stops = set(self.stop_ids)
        for row, sample in enumerate(samples):
            new = output[row, prompt_length:].tolist()
            count, ended = len(new), False  # end of sequence (and padding after it) not counted
            for position, token in enumerate(new):
                if token in stops:
                    count, ended = position, True
                    break
            text = self.tokenizer.decode(new[:count], skip_special_tokens=True).strip()
            ttft, tpot, latency = row_timing(clock.marks, clock.start, count, ended)
            results.append(
                Generation(
                    sample, text, count, int(prompt_lengths[row]), timing, ttft, tpot, latency
                )
            )
        return results

    def generate_all(
        self,
        samples: Sequence[Sample],
        batch_size: int | None,
        on_batch: Callable[[int, int], None] | None = None,
        attempts: Attempts | None = None,
        resume: ResumeFrom | None = None,
        on_done: BatchDone | None = None,
    ) -> tuple[list[Generation], int]:
        """Every sample, in batches of similar prompt length; halves the batch on out-of-memory.

        Returns the generations in the order of `samples` and the batch size that fitted.
        `attempts` hears of each batch begun and of each that failed, so a failed attempt's
        memory peak is not counted. `resume`: what an earlier attempt finished, and its order
        and batch size, which the remaining batches follow; `on_done` hears of each batch
        finished (its index, generations, the order and the size in force).
        """
        if resume is not None:
            index_of = {s.key: i for i, s in enumerate(samples)}
            order = [index_of[key] for key in resume.order]
            size = resume.size
        else:
            size = batch_size or balanced_batch_size(
                len(samples), CUDA_AUTO_BATCH if self.device == "cuda" else CPU_AUTO_BATCH
            )
            size = max(1, min(size, len(samples)))
            lengths = prompt_lengths(self.tokenizer, samples, self.spec)
            order = sorted(range(len(samples)), key=lambda i: (-lengths[i], i))
        keys = [samples[i].key for i in order]
        finished = resume.finished if resume is not None else {}
        results = {i: finished[samples[i].key] for i in order if samples[i].key in finished}
        remaining = [i for i in order if i not in results]
        batches = resume.batches if resume is not None else 0
        position = 0
        if results and on_batch is not None:
            on_batch(len(results), len(order))  # "20/70 samples" first: resumed
        while position < len(remaining):
            indices = remaining[position : position + size]
            if attempts is not None:
                attempts.begin_attempt()
            try:
                batch: list[Generation] | None = self.generate_batch(
                    [samples[i] for i in indices], batches
                )
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                if size == 1:
                    raise OutOfMemoryError(
                        "out of memory generating even one sample at a time; use a lower "
                        "precision, more GPUs (spec.resources.gpus) or a smaller maxLength"
                    ) from error
                batch = None
            if batch is None:  # out of the except block: the failed attempt's frames are freed
                if self.device == "cuda":
                    torch.cuda.empty_cache()
                if attempts is not None:
                    attempts.discard_attempt()
                size = max(1, size // 2)
                continue
            results.update(zip(indices, batch, strict=True))
            position += len(indices)
            if on_done is not None:
                on_done(batches, batch, keys, size)
            batches += 1
            if on_batch is not None:
                on_batch(len(results), len(order))
        return [results[i] for i in range(len(samples))], size
