"""Batched generation: exact filtering, per-sample reproducibility, and token budgets."""

from pathlib import Path
from typing import Any

import pytest
import torch

from quanteval.api.spec import GenerationSpec
from quanteval.precisions import Precision
from quanteval.prompts import PAPER_PROMPTS, expand_samples
from quanteval_worker.device import DeviceInfo
from quanteval_worker.generation import (
    Generator,
    SeededRowSampler,
    prompt_lengths,
    row_timing,
    token_budget,
)
from quanteval_worker.loading import load_causal_lm, load_tokenizer
from quanteval_worker.precisions import STRATEGIES
from quanteval_worker.sampling import counter_uniform, sample_tokens
from quanteval_worker.sources import ResolvedSource


def _load(directory: Path) -> tuple[Any, Any]:
    source = ResolvedSource(str(directory), None, is_hub=False)
    model = load_causal_lm(source, STRATEGIES[Precision.FP32], DeviceInfo("cpu"))
    return model, load_tokenizer(source)


def _transformers_distribution(
    scores: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """The filtered distribution as transformers' own warpers make it: the reference."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    ids = torch.zeros(scores.shape[0], 1, dtype=torch.long)
    for warper in (
        TemperatureLogitsWarper(temperature),
        TopKLogitsWarper(top_k) if top_k else None,
        TopPLogitsWarper(top_p) if top_p < 1 else None,
    ):
        if warper is not None:
            scores = warper(ids, scores)
    return scores.softmax(dim=-1)


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(0.9, 10, 0.9), (0.7, 0, 0.8), (1.3, 0, 1.0), (1.0, 5, 1.0)]
)
def test_the_sampler_draws_exactly_from_the_filtered_distribution(
    temperature: float, top_k: int, top_p: float
) -> None:
    from scipy.stats import chisquare

    torch.manual_seed(1)
    logits = torch.randn(1, 40) * 2
    expected = _transformers_distribution(logits.clone(), temperature, top_k, top_p)[0].double()
    draws = 40_000
    seeds = torch.arange(draws, dtype=torch.int64) * 7919 + 13  # one sample seed per draw
    tokens = sample_tokens(logits.expand(draws, -1), seeds, 3, temperature, top_k, top_p)
    counts = torch.bincount(tokens, minlength=40).double()
    kept = expected > 0
    assert counts[~kept].sum() == 0  # never a token the filters drop
    expected_counts = expected[kept] / expected[kept].sum() * draws
    result = chisquare(counts[kept].numpy(), expected_counts.numpy())
    assert result.pvalue > 1e-4, (counts, expected * draws)


def test_a_tie_at_the_kth_logit_keeps_every_tied_token_as_transformers_does() -> None:
    logits = torch.tensor([[3.0, 1.0, 1.0, 1.0, -2.0]])
    expected = _transformers_distribution(logits.clone(), 1.0, 2, 1.0)[0]
    assert (expected > 0).sum() == 4
    seeds = torch.arange(4000, dtype=torch.int64)
    tokens = sample_tokens(logits.expand(4000, -1), seeds, 0, 1.0, 2, 1.0)
    assert set(tokens.tolist()) == {0, 1, 2, 3}


def test_the_uniforms_are_a_function_of_seed_and_step_only() -> None:
    from scipy.stats import kstest

    seeds = torch.arange(20_000, dtype=torch.int64) * 104729
    first = counter_uniform(seeds, 5)
    assert torch.equal(first, counter_uniform(seeds.flip(0), 5).flip(0))
    assert not torch.equal(first, counter_uniform(seeds, 6))
    assert kstest(first.numpy(), "uniform").pvalue > 1e-4
    assert ((first >= 0) & (first < 1)).all()


def test_a_step_per_row_draws_what_that_step_alone_draws() -> None:
    """vLLM's rows are at different steps: the per-row form wraps to the same uniforms."""
    seeds = torch.tensor([1, 2**40 + 7, -(2**62), 2**63 - 1], dtype=torch.int64)
    steps = torch.tensor([0, 3, 2**20, 2**33], dtype=torch.int64)

    per_row = counter_uniform(seeds, steps)

    for row, step in enumerate(steps.tolist()):
        assert per_row[row] == counter_uniform(seeds[row : row + 1], step)[0]


def test_a_rows_token_does_not_depend_on_its_batch() -> None:
    spec = GenerationSpec(top_k=0, top_p=1.0)
    torch.manual_seed(2)
    scores = torch.randn(3, 20)
    ids = torch.zeros(3, 5, dtype=torch.long)
    batch = SeededRowSampler([11, 22, 33], [9, 9, 9], 3, 0, spec)(ids, scores)
    alone = SeededRowSampler([22], [9], 3, 0, spec)(ids[:1], scores[1:2])
    assert torch.equal(batch[1], alone[0])
    assert int(batch[1].argmax()) == int(alone[0].argmax())
    assert torch.isinf(batch).sum() == 3 * 19  # one token chosen per row


def test_a_spent_budget_forces_end_of_sequence() -> None:
    spec = GenerationSpec()
    sampler = SeededRowSampler([1, 2], [2, 50], prompt_length=4, eos_token_id=7, spec=spec)
    out = sampler(torch.zeros(2, 6, dtype=torch.long), torch.randn(2, 20))  # step 2
    assert int(out[0].argmax()) == 7
    assert torch.isinf(out[0]).sum() == 19
    assert torch.isinf(out[1]).sum() == 19


def test_row_timing_reads_first_token_per_token_and_end_of_sequence() -> None:
    marks = [1.0, 1.5, 2.0, 2.5, 3.0]  # token i+1's logits at marks[i]; the batch began at 0.5
    assert row_timing(marks, 0.5, 3, ended=True) == (0.5, 0.5, 2.0)  # end chosen at marks[3]
    assert row_timing(marks, 0.5, 5, ended=False) == (0.5, 0.5, 2.5)  # cut after token 5
    assert row_timing(marks, 0.5, 0, ended=True) == (0.5, None, 0.5)  # ended at once


def test_token_budget_counts_the_prompt_as_the_study_did() -> None:
    spec = GenerationSpec(max_length=100, max_new_tokens=64)
    assert token_budget(30, spec) == 64
    assert token_budget(60, spec) == 40
    assert token_budget(60, GenerationSpec(preset="greedy")) == 64
    # The paper preset caps nothing below what maxLength leaves.
    assert token_budget(12, GenerationSpec(preset="paper")) == 88


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


def _with_bos(directory: Path, into: Path) -> Path:
    """The model with a tokenizer that adds BOS where asked for special tokens, as Llama's and
    Mistral's do (SmolLM2's adds none)."""
    import shutil

    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    shutil.copytree(directory, into)
    tokenizer = AutoTokenizer.from_pretrained(into)
    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    tokenizer.save_pretrained(into)
    return into


def test_the_paper_preset_runs_the_bare_prompt_up_to_max_length(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    """The study's pipeline: no chat template, no special tokens (transformers 4.28's
    TextGenerationPipeline tokenized without them), max_length=100 in all."""
    model, tokenizer = _load(_with_bos(tiny_llama_dir, tmp_path / "bos"))
    assert tokenizer("joy")["input_ids"][0] == tokenizer.bos_token_id  # it adds BOS if asked
    spec = GenerationSpec(preset="paper")
    assert spec.prompt_format == "raw" and spec.max_new_tokens is None
    samples = expand_samples(
        ["Write a text that expresses <class>", "Please complete the sentence: I felt <class>"],
        ["joy"],
        1,
        3,
    )
    generator = Generator(model, tokenizer, spec, "cpu")
    generations, _ = generator.generate_all(samples, 2)
    bos = tokenizer.bos_token_id
    assert bos is not None and all(ids[0] != bos for ids in generator.prompt_ids(samples))
    assert generator.settings(2).special_tokens_added is False  # result.json generation
    for generation in generations:
        bare = tokenizer(generation.sample.prompt, add_special_tokens=False)["input_ids"]
        assert generation.prompt_tokens == len(bare)
        # Random weights never choose to stop: each sample fills what maxLength leaves, which is
        # more than the 64 new tokens the preset used to cap at.
        assert generation.prompt_tokens + generation.new_tokens == 100
        assert generation.new_tokens > 64
    assert prompt_lengths(tokenizer, samples, spec) == [g.prompt_tokens for g in generations]
    with_bos = Generator(
        model, tokenizer, GenerationSpec(preset="paper", add_special_tokens=True), "cpu"
    )
    assert all(ids[0] == bos for ids in with_bos.prompt_ids(samples))
    assert with_bos.settings(2).special_tokens_added is True


def test_the_chat_format_goes_through_the_chat_template(tiny_llama_dir: Path) -> None:
    _, tokenizer = _load(tiny_llama_dir)
    samples = expand_samples(["<class> sentence"], ["joy"], 1, 3)
    raw, chat = (
        prompt_lengths(tokenizer, samples, GenerationSpec(prompt_format=f))[0]
        for f in ("raw", "chat")
    )
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": "joy sentence"}], add_generation_prompt=True, tokenize=False
    )
    assert chat == len(tokenizer(templated, add_special_tokens=False)["input_ids"]) > raw


def test_prompt_4s_trailing_space_is_sent_raw_and_framed_away_by_a_chat_template(
    tiny_llama_dir: Path,
) -> None:
    """The study's prompt 4 ends with a space: the raw prompt sends it (as its pipeline did), a
    chat message does not (the template frames the message; ChatML would send it as a token)."""
    _, tokenizer = _load(tiny_llama_dir)
    spaced, bare = (
        expand_samples([template], ["joy"], 1, 3)
        for template in (PAPER_PROMPTS[3], PAPER_PROMPTS[3].rstrip())
    )
    assert spaced[0].prompt == "What is a sentence example for joy? "
    raw = GenerationSpec(preset="paper")
    assert prompt_lengths(tokenizer, spaced, raw) == [
        len(tokenizer(spaced[0].prompt, add_special_tokens=False)["input_ids"])
    ]
    assert prompt_lengths(tokenizer, spaced, raw) > prompt_lengths(tokenizer, bare, raw)
    chat = GenerationSpec(prompt_format="chat")
    assert prompt_lengths(tokenizer, spaced, chat) == prompt_lengths(tokenizer, bare, chat)


def test_the_models_own_generation_config_never_changes_what_is_generated(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    """Qwen2.5 ships repetition_penalty 1.05 and sampling defaults; none of it may apply."""
    import shutil

    from transformers import GenerationConfig

    shutil.copytree(tiny_llama_dir, tmp_path / "opinionated", dirs_exist_ok=True)
    GenerationConfig(
        do_sample=True, temperature=0.05, top_k=2, repetition_penalty=3.0, no_repeat_ngram_size=1
    ).save_pretrained(tmp_path / "opinionated")
    samples = expand_samples(["Write a text that expresses <class>"], ["joy", "fear"], 1, 5)
    texts = {}
    for name, directory in (("plain", tiny_llama_dir), ("opinionated", tmp_path / "opinionated")):
        model, tokenizer = _load(directory)
        for preset in ("paper", "greedy"):
            generator = Generator(model, tokenizer, GenerationSpec(preset=preset), "cpu")
            generations, size = generator.generate_all(samples, None)
            texts[name, preset] = [g.text for g in generations]
        settings = generator.settings(size)
        if name == "opinionated":
            assert settings.model_defaults_ignored["repetition_penalty"] == 3.0
            assert settings.model_defaults_ignored["no_repeat_ngram_size"] == 1
        else:
            assert "repetition_penalty" not in settings.model_defaults_ignored
    assert texts["plain", "paper"] == texts["opinionated", "paper"]
    assert texts["plain", "greedy"] == texts["opinionated", "greedy"]


def test_the_settings_in_force_are_the_specs_and_greedy_has_no_sampling_ones(
    tiny_llama_dir: Path,
) -> None:
    model, tokenizer = _load(tiny_llama_dir)
    paper = Generator(model, tokenizer, GenerationSpec(preset="paper"), "cpu").settings(35)
    assert (paper.prompt_format, paper.do_sample, paper.top_k, paper.top_p) == (
        "raw",
        True,
        10,
        0.9,
    )
    assert (paper.temperature, paper.max_length, paper.max_new_tokens) == (0.9, 100, None)
    assert paper.batch_size == 35 and tokenizer.eos_token_id in paper.stop_token_ids
    greedy = Generator(model, tokenizer, GenerationSpec(preset="greedy"), "cpu").settings(8)
    assert (greedy.prompt_format, greedy.do_sample, greedy.temperature) == ("chat", False, None)
    assert (greedy.max_length, greedy.max_new_tokens) == (None, 64)
