"""A GGUF file as shipped, run by llama.cpp (llama-cpp-python), its tokens chosen by our sampler.

llama.cpp computes the logits at the file's own quantization (Q4_1 for the quick start); every
token is still drawn by `sampling.sample_tokens` from the same per-sample seeds and the same
filtered distribution as the transformers runs, so a sample differs from the dequantized fp32
run's only where the file's quantization moves the logits. Prompts are tokenized by the
checkpoint's transformers tokenizer (the ids every precision of the model receives, the fidelity
corpus included), and each row of a batch is its own llama.cpp sequence in one context: a step of
the whole batch is one `llama_decode`.

The context is sized to the batch it holds (its KV cache is allocated up front), and grows when a
later batch needs more, so the memory measured is what the work needed.
"""

import ctypes
import logging
import os
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quanteval.api.errors import CannotLoadError, OutOfMemoryError
from quanteval.api.result import CheckpointQuantization
from quanteval.api.spec import GenerationSpec
from quanteval.expected_rating import NumberTree, Step, Tokens
from quanteval.prompts import Sample
from quanteval_worker.engines.base import LLAMA_CPP, Engine, EngineInfo, Loaded, step_of
from quanteval_worker.generation import (
    BatchTiming,
    Generation,
    Generator,
    row_timing,
    token_budget,
)
from quanteval_worker.gguf_files import parameters_by_type
from quanteval_worker.sampling import sample_tokens

_CONTEXT_GRANULE = 256  # tokens: contexts grow in steps of this, not one per batch
_FLOATS = ctypes.POINTER(ctypes.c_float)
MAX_SEQUENCES = 256  # LLAMA_MAX_SEQ: the sequences a llama.cpp context holds at most


def llama_cpp_version() -> str:
    import llama_cpp

    return str(llama_cpp.__version__)


def _threads() -> int:
    """The threads torch computes with here, so both engines get the same cores."""
    return max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0))))


class GgufModel:
    """A GGUF file loaded by llama.cpp on the CPU, with one context of several sequences."""

    def __init__(self, path: Path, generation_config: Any = None) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # its load chatter
        self._llama_cpp = llama_cpp
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        params.use_mmap = False  # weights read into memory: resident, and measured as such
        try:
            self.model = LlamaModel(path_model=str(path), params=params, verbose=False)
        except ValueError as error:
            raise CannotLoadError(f"llama.cpp cannot load {path}: {error}") from error
        self.path = path
        self.generation_config = generation_config  # the checkpoint's, for its stop tokens
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.model.vocab))
        self.weights_bytes = int(llama_cpp.llama_model_size(self.model.model))
        self.parameters = int(llama_cpp.llama_model_n_params(self.model.model))
        self.threads = _threads()
        self._context: Any = None
        self._tokens = 0
        self._sequences = 0

    def begin(self, sequences: int, tokens: int) -> None:
        """An empty context for `sequences` sequences of `tokens` in all (grown if too small)."""
        if self._context is None or sequences > self._sequences or tokens > self._tokens:
            from llama_cpp._internals import LlamaContext

            self._context = None  # the old KV cache freed before the new one is allocated
            self._sequences = max(sequences, self._sequences)
            granules = -(-max(tokens, self._tokens) // _CONTEXT_GRANULE)
            self._tokens = granules * _CONTEXT_GRANULE
            params = self._llama_cpp.llama_context_default_params()
            params.n_ctx = self._tokens
            params.n_batch = self._tokens  # a whole prefill (or corpus batch) in one decode
            params.n_seq_max = self._sequences
            params.kv_unified = True  # one cache shared by the sequences, n_ctx in all
            params.n_threads = params.n_threads_batch = self.threads
            params.no_perf = True
            try:
                self._context = LlamaContext(model=self.model, params=params, verbose=False)
            except ValueError as error:
                raise OutOfMemoryError(
                    f"llama.cpp could not allocate a context of {self._tokens} tokens for "
                    f"{self._sequences} sequences: {error}; use a smaller batchSize"
                ) from error
        self._context.kv_cache_clear()

    def decode(self, rows: Sequence[tuple[int, Sequence[int], int, bool]]) -> torch.Tensor:
        """One llama_decode of `rows` (sequence id, tokens, position of the first, logits at
        every token or only at the last) in the context `begin` made; the logits asked for, in
        order, as float32 [outputs, vocabulary]."""
        llama_cpp = self._llama_cpp
        count = sum(len(tokens) for _, tokens, _, _ in rows)
        batch = llama_cpp.llama_batch_init(count, 0, 1)
        try:
            index = outputs = 0
            for sequence, tokens, first, every in rows:
                for offset, token in enumerate(tokens):
                    wanted = every or offset == len(tokens) - 1
                    batch.token[index] = token
                    batch.pos[index] = first + offset
                    batch.n_seq_id[index] = 1
                    batch.seq_id[index][0] = sequence
                    batch.logits[index] = wanted
                    outputs += wanted
                    index += 1
            batch.n_tokens = count
            code = llama_cpp.llama_decode(self._context.ctx, batch)
            if code != 0:
                raise OutOfMemoryError(
                    f"llama_decode returned {code} on {count} tokens (the context is full, or "
                    "out of memory); use a smaller batchSize"
                )
            pointer = ctypes.cast(llama_cpp.llama_get_logits(self._context.ctx), _FLOATS)
            return torch.from_numpy(np.ctypeslib.as_array(pointer, (outputs, self.n_vocab)).copy())
        finally:
            llama_cpp.llama_batch_free(batch)

    def sequence_logits(self, sequences: Sequence[list[int]]) -> list[torch.Tensor]:
        """Teacher-forced logits at every position of each sequence (the fidelity pass)."""
        self.begin(len(sequences), sum(len(tokens) for tokens in sequences))
        logits = self.decode([(i, tokens, 0, True) for i, tokens in enumerate(sequences)])
        return list(logits.split([len(tokens) for tokens in sequences]))

    def last_logits(self, prefixes: Sequence[list[int]]) -> torch.Tensor:
        """The logits after each prefix's last token, each prefix its own sequence."""
        self.begin(len(prefixes), sum(len(tokens) for tokens in prefixes))
        return self.decode([(i, tokens, 0, False) for i, tokens in enumerate(prefixes)])

    def tree_logits(
        self, prompt: list[int], prefixes: Sequence[Tokens]
    ) -> dict[Tokens, torch.Tensor]:
        """The logits after `prompt` + each prefix (shortest first, the empty one first, each
        one's parent before it), from the prompt's cache: a prefix is a sequence sharing its
        parent's cells (llama_memory_seq_cp) and decoding its last token alone, a depth a
        decode; a depth's parents are dropped once it is done, so at most two depths of
        sequences live at once. Empty where that is more sequences than llama.cpp holds."""
        depths = [[p for p in prefixes if len(p) == d] for d in range(max(map(len, prefixes)) + 1)]
        width = max([1] + [len(a) + len(b) for a, b in pairwise(depths)])
        if width > MAX_SEQUENCES:
            return {}
        self.begin(width, len(prompt) + len(prefixes))
        logits: dict[Tokens, torch.Tensor] = {(): self.decode([(0, prompt, 0, False)])[0]}
        sequence: dict[Tokens, int] = {(): 0}
        free = list(range(width - 1, 0, -1))
        for depth, group in enumerate(depths[1:], start=1):
            for prefix in group:
                sequence[prefix] = free.pop()
                self._context.kv_cache_seq_cp(sequence[prefix[:-1]], sequence[prefix], -1, -1)
            position = len(prompt) + depth - 1
            rows = [(sequence[p], [p[-1]], position, False) for p in group]
            logits.update(zip(group, self.decode(rows), strict=True))
            for parent in depths[depth - 1]:
                self._context.kv_cache_seq_rm(sequence[parent], -1, -1)
                free.append(sequence[parent])
        return logits


class GgufGenerator(Generator):
    """Generator's batches and timings, with llama.cpp computing each step's logits."""

    model: GgufModel

    def __init__(self, model: GgufModel, tokenizer: Any, spec: GenerationSpec, device: str) -> None:
        super().__init__(model, tokenizer, spec, "cpu")

    def generate_batch(self, samples: Sequence[Sample], index: int = 0) -> list[Generation]:
        spec = self.spec
        prompts = self.prompt_ids(samples)
        budgets = [token_budget(len(p), spec) for p in prompts]
        steps = max(budgets)
        seeds = torch.tensor([s.seed for s in samples], dtype=torch.int64)
        capacity = sum(len(p) + b for p, b in zip(prompts, budgets, strict=True))
        stops = set(self.stop_ids)
        new: list[list[int]] = [[] for _ in samples]
        ended = [False] * len(samples)
        marks: list[float] = []
        self.model.begin(len(samples), capacity)  # the KV cache allocated before the clock
        start = time.perf_counter()
        logits = self.model.decode([(i, p, 0, False) for i, p in enumerate(prompts)])
        active = list(range(len(samples)))
        for step in range(steps):
            marks.append(time.perf_counter())
            # Rows draw independently (each from its own seed): the finished ones are left out.
            if spec.do_sample:
                chosen = sample_tokens(
                    logits, seeds[active], step, spec.temperature, spec.top_k, spec.top_p
                )
            else:
                chosen = logits.argmax(dim=-1)
            for row, token in zip(active, chosen.tolist(), strict=True):
                token = self.eos_token_id if budgets[row] <= step else int(token)
                new[row].append(token)
                ended[row] = token in stops
            active = [row for row in active if not ended[row]]
            if not active or step == steps - 1:
                break
            logits = self.model.decode(
                [(r, [new[r][-1]], len(prompts[r]) + step, False) for r in active]
            )
        ended_at = time.perf_counter()
        timing = BatchTiming(index, marks[0] - start, ended_at - marks[0])
        results = []
        for row, sample in enumerate(samples):
            count = len(new[row]) - 1 if ended[row] else len(new[row])
            text = self.tokenizer.decode(new[row][:count], skip_special_tokens=True).strip()
            ttft, tpot, latency = row_timing(marks, start, count, ended[row])
            results.append(
                Generation(sample, text, count, len(prompts[row]), timing, ttft, tpot, latency)
            )
        return results


class LlamaCppEngine(Engine):
    """A GGUF file as shipped, on the CPU (the worker's llama.cpp build has no CUDA)."""

    def __init__(self, model: GgufModel, checkpoint: CheckpointQuantization | None) -> None:
        self.model: GgufModel | None = model
        version = llama_cpp_version()
        # ggml rounds activations to 8 bits in blocks, so a prompt's logits depend on its row
        # in the batch (docs/benchmarks.md has the measured spread); reproducible at one size.
        self.info = EngineInfo(LLAMA_CPP, version, False, {"threads": model.threads})
        quantization = {
            "engine": LLAMA_CPP,
            "llamaCppPython": version,
            "file": model.path.name,
            "fileType": checkpoint.kind if checkpoint else "",
            "threads": model.threads,
            "batchInvariant": False,
        }
        self.loaded = Loaded(model.weights_bytes, parameters_by_type(model.path), quantization)

    @classmethod
    def load(
        cls, path: Path, generation_config: Any, checkpoint: CheckpointQuantization | None
    ) -> "LlamaCppEngine":
        return cls(GgufModel(path, generation_config), checkpoint)

    def _model(self) -> GgufModel:
        if self.model is None:
            raise RuntimeError("the llama.cpp engine was closed")
        return self.model

    def generator(self, tokenizer: Any, spec: GenerationSpec, device: str) -> Generator:
        return GgufGenerator(self._model(), tokenizer, spec, device)

    def sequence_logits(self, sequences: Sequence[list[int]]) -> list[torch.Tensor]:
        return self._model().sequence_logits(sequences)

    def last_logits(self, prefixes: Sequence[list[int]]) -> torch.Tensor:
        return self._model().last_logits(prefixes)

    def number_steps(
        self, prompt: list[int], tree: NumberTree, digits: torch.Tensor
    ) -> dict[Tokens, Step]:
        """The number tree walked from the prompt's cache (GgufModel.tree_logits); a pass per
        prefix where the tree is too wide for llama.cpp's sequences."""
        logits = self._model().tree_logits(prompt, tree.prefixes)
        if not logits:
            return super().number_steps(prompt, tree, digits)
        vocabulary = torch.arange(self._model().n_vocab)
        return {
            p: step_of(vocabulary, torch.log_softmax(logits[p].double(), -1), tree, p, digits)
            for p in tree.prefixes
        }

    def close(self) -> None:
        self.model = None
