"""Batched generation: exact filtering, per-sample reproducibility, and token budgets."""

from pathlib import Path
from typing import Any

import pytest
import torch

from quanteval.precisions import Precision
from quanteval.prompts import expand_samples
from quanteval.spec import GenerationSpec
from quanteval_worker.generation import Generator, SeededRowSampler, filter_logits, token_budget
from quanteval_worker.loading import load_causal_lm, load_tokenizer
from quanteval_worker.precision_strategies import STRATEGIES
from quanteval_worker.sources import ResolvedSource


def _load(directory: Path) -> tuple[Any, Any]:
    source = ResolvedSource(str(directory), None, is_hub=False)
    model = load_causal_lm(source, STRATEGIES[Precision.FP32], "cpu")
    return model, load_tokenizer(source)


def test_filter_logits_matches_transformers_warpers() -> None:
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(1)
    scores = torch.randn(3, 50)
    ids = torch.zeros(3, 1, dtype=torch.long)
    expected = scores.clone()
    for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(10), TopPLogitsWarper(0.8)):
        expected = warper(ids, expected)
    ours = filter_logits(scores, 0.7, 10, 0.8)
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    kept = ~torch.isinf(ours)
    assert torch.allclose(ours[kept], expected[kept])


def test_a_rows_noise_does_not_depend_on_its_batch() -> None:
    spec = GenerationSpec(top_k=0, top_p=1.0)
    scores = torch.zeros(3, 20)
    ids = torch.zeros(3, 5, dtype=torch.long)
    batch = SeededRowSampler([11, 22, 33], [9, 9, 9], 3, 0, spec)(ids, scores)
    alone = SeededRowSampler([22], [9], 3, 0, spec)(ids[:1], scores[:1])
    assert torch.equal(batch[1], alone[0])
    assert not torch.equal(batch[0], batch[1])


def test_a_spent_budget_forces_end_of_sequence() -> None:
    spec = GenerationSpec()
    sampler = SeededRowSampler([1, 2], [2, 50], prompt_length=4, eos_token_id=7, spec=spec)
    out = sampler(torch.zeros(2, 6, dtype=torch.long), torch.randn(2, 20))  # step 2
    assert int(out[0].argmax()) == 7
    assert torch.isinf(out[0]).sum() == 19
    assert not torch.isinf(out[1]).all()


def test_token_budget_counts_the_prompt_as_the_study_did() -> None:
    spec = GenerationSpec(max_length=100, max_new_tokens=64)
    assert token_budget(30, spec) == 64
    assert token_budget(60, spec) == 40
    assert token_budget(150, spec) == 1
    assert token_budget(60, GenerationSpec(preset="greedy")) == 64


@pytest.mark.parametrize("preset", ["paper", "greedy"])
def test_texts_do_not_depend_on_batch_size(tiny_llama_dir: Path, preset: str) -> None:
    model, tokenizer = _load(tiny_llama_dir)
    spec = GenerationSpec(preset=preset, max_new_tokens=12)
    samples = expand_samples(
        ["Write a text that expresses <class>", "<class> sentence"], ["joy", "fear"], 2, 7
    )
    generator = Generator(model, tokenizer, spec, "cpu")
    one, size_one = generator.generate_all(samples, batch_size=1)
    many, size_many = generator.generate_all(samples, batch_size=8)
    assert (size_one, size_many) == (1, 8)
    assert [g.text for g in one] == [g.text for g in many]
    assert [g.sample for g in many] == samples
    assert all(0 < g.new_tokens <= 12 for g in many)
    if preset == "paper":  # different seeds: samples of one prompt differ
        assert many[0].text != many[1].text


def test_generation_stops_at_max_length(tiny_llama_dir: Path) -> None:
    model, tokenizer = _load(tiny_llama_dir)
    samples = expand_samples(["Write a text that expresses <class>"], ["joy"], 1, 1)
    prompt_tokens = (
        Generator(model, tokenizer, GenerationSpec(), "cpu")
        .generate_all(samples, None)[0][0]
        .prompt_tokens
    )
    spec = GenerationSpec(max_length=prompt_tokens + 5, max_new_tokens=64)
    [generation], _ = Generator(model, tokenizer, spec, "cpu").generate_all(samples, None)
    assert generation.new_tokens <= 5
