"""fp16 / bf16 / int8 / nf4 on a model of Llama-2-7B's layer shapes with random weights.

Hidden 4096, 32 heads, MLP 11008, vocabulary 32,000, as many layers as `--layers` (32 is the 7B).
Each precision runs in a process of its own, so each peak is its own, and goes through the
worker's own code: its precision strategies and loader (bitsandbytes, the device map), its engine
(the counter-based sampler, per-step marks with a device sync), its phase trackers (torch's
allocator peaks, NVML used memory polled over the phase, NVML energy). Per precision: weights
bytes; load and generation peaks; TTFT, TPOT and decode tokens/s of samples generated alone
(batch 1) and together (batch 35); joules per generated token; the sampler's share of a decode
step; and how many samples came out the same alone as in the batch (LLM.int8 picks its outlier
columns over the whole batch, and kernels differ by batch size). Prompts are 64 random words, 64
new tokens each, a warm-up generation first. Written as Markdown (`gpu-table.md`) and JSON under
--out. No pass/fail: figures to read.

    python benchmarks/gpu_table.py [--layers 32] [--out gpu-check-out]
    python benchmarks/gpu_table.py --tiny --precisions fp32,int8   # any device: the script's test
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The checkout's root, for tests.tiny_models and benchmarks.sampler_overhead (neither installed).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LLAMA2_7B = {
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "intermediate_size": 11008,
    "vocab_size": 32_000,
    "max_position_embeddings": 4096,
}
TINY = LLAMA2_7B | {
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 128,
}
BATCH = 35
ALONE = 4  # samples also generated one at a time


def build(directory: Path, layers: int, tiny: bool) -> None:
    import torch

    from tests.tiny_models import random_llama

    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = (TINY if tiny else LLAMA2_7B) | {"num_hidden_layers": layers}
    random_llama(directory, dtype="float16", device=device, **shape)


def _p50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _generation_figures(generations: list[Any], joules: float | None) -> dict[str, Any]:
    batches = {g.batch.index: g.batch for g in generations}.values()
    decode_seconds = sum(b.decode_seconds for b in batches)
    decode_tokens = sum(g.decode_tokens for g in generations)
    tokens = sum(g.new_tokens for g in generations)
    return {
        "ttftMs": _p50([g.ttft_seconds * 1000 for g in generations]),
        "tpotMs": _p50([g.tpot_seconds * 1000 for g in generations if g.tpot_seconds]),
        "tokensPerSecond": decode_tokens / decode_seconds if decode_seconds else None,
        "generatedTokens": tokens,
        "joulesPerToken": joules / tokens if joules is not None and tokens else None,
    }


def measure(directory: Path, precision: str, new_tokens: int, prompt_words: int) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from benchmarks.sampler_overhead import median_ms
    from quanteval.api.spec import GenerationSpec
    from quanteval.precisions import Precision
    from quanteval.prompts import Sample
    from quanteval_worker.device import detect_device
    from quanteval_worker.generation import Generator, SeededRowSampler
    from quanteval_worker.loading import gpu_memory_caps, load_causal_lm
    from quanteval_worker.precisions import STRATEGIES
    from quanteval_worker.sources import ResolvedSource
    from quanteval_worker.trackers import PhaseTracker, cpu_seconds_used
    from quanteval_worker.weights import weights_bytes

    device = detect_device()
    strategy = STRATEGIES[Precision(precision)]
    strategy.check(device, allow_bf16_emulation=False)
    tracker = PhaseTracker(device, time.perf_counter(), cpu_seconds_used())
    source = ResolvedSource(str(directory), None, is_hub=False)
    with tracker.phase("load"):
        model = load_causal_lm(source, strategy, device, gpu_memory_caps(None))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    spec = GenerationSpec(
        preset="paper", prompt_format="raw", max_new_tokens=new_tokens, max_length=None
    )
    generator = Generator(model, tokenizer, spec, device.kind)
    words = random.Random(0)
    vocabulary = int(model.config.vocab_size)
    samples = [
        Sample(
            prompt_id=i,
            emotion="joy",
            sample_index=0,
            prompt=" ".join(f"w{words.randrange(vocabulary - 3)}" for _ in range(prompt_words)),
            seed=1234 + 7919 * i,
        )
        for i in range(BATCH)
    ]
    generator.generate_batch(samples[-1:])  # warm-up: kernels chosen, caches made
    with tracker.phase("alone"):
        alone = [generator.generate_batch([s], i)[0] for i, s in enumerate(samples[:ALONE])]
    with tracker.phase("batch"):
        together = generator.generate_batch(samples)
    figures = tracker.memory.figures
    dev = device.kind
    ids = torch.zeros(BATCH, 8, dtype=torch.long, device=dev)
    scores = torch.randn(BATCH, vocabulary, device=dev) * 3
    sampler = SeededRowSampler([s.seed for s in samples], [10_000] * BATCH, 0, 2, spec)
    sampler_ms = median_ms(lambda: sampler(ids, scores), dev, 30)
    batch = _generation_figures(together, tracker.joules.get("batch"))
    name = device.gpu_names[0] if device.gpu_names else "CPU"
    peak = "MaxAllocatedBytes" if dev == "cuda" else "PeakRssBytes"
    return {
        "precision": precision,
        "device": name,
        "layers": int(model.config.num_hidden_layers),
        "weightsBytes": weights_bytes(model),
        "loadSeconds": tracker.seconds["load"],
        "loadPeakBytes": figures.get(f"load{peak}"),
        "generationPeakBytes": figures.get(f"batch{peak}"),
        "generationReservedBytes": figures.get("batchMaxReservedBytes"),
        "generationNvmlPeakBytes": figures.get("batchNvmlPeakUsedBytes"),
        "alone": _generation_figures(alone, tracker.joules.get("alone")),
        "batch": batch,
        "samplerMs": sampler_ms,
        "samplerShare": sampler_ms / batch["tpotMs"] if batch["tpotMs"] else None,
        "sameAloneAsInBatch": sum(a.text == b.text for a, b in zip(alone, together, strict=False)),
        "energy": "nvml" if tracker.joules else tracker.energy.unavailable,
    }


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| precision | weights GiB | load peak GiB | gen peak GiB (reserved, NVML) | "
        "TTFT ms b1 / b35 | TPOT ms b1 / b35 | tokens/s b1 / b35 | J/token b35 | "
        "sampler share b35 | same alone as in batch |"
    )
    lines = [header, "|" + " --- |" * 10]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['precision']} | failed: {r['failed']} |" + " |" * 8)
            continue
        a, b = r["alone"], r["batch"]
        lines.append(
            f"| {r['precision']} | {_gib(r['weightsBytes'])} | {_gib(r['loadPeakBytes'])} | "
            f"{_gib(r['generationPeakBytes'])} ({_gib(r['generationReservedBytes'])}, "
            f"{_gib(r['generationNvmlPeakBytes'])}) | "
            f"{_num(a['ttftMs'], '.1f')} / {_num(b['ttftMs'], '.1f')} | "
            f"{_num(a['tpotMs'], '.2f')} / {_num(b['tpotMs'], '.2f')} | "
            f"{_num(a['tokensPerSecond'], '.1f')} / {_num(b['tokensPerSecond'], '.1f')} | "
            f"{_num(b['joulesPerToken'], '.3f')} | "
            f"{_num(None if r['samplerShare'] is None else 100 * r['samplerShare'], '.2f')}% | "
            f"{r['sameAloneAsInBatch']}/{ALONE} |"
        )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    with tempfile.TemporaryDirectory(prefix="gpu-table-") as work:
        checkpoint = Path(work) / "model"
        began = time.perf_counter()
        command = [*me, "build", str(checkpoint), "--layers", str(args.layers)]
        subprocess.run([*command, *(["--tiny"] if args.tiny else [])], check=True)
        print(f"built {args.layers} layers in {time.perf_counter() - began:.0f} s", flush=True)
        rows = []
        for precision in args.precisions.split(","):
            began = time.perf_counter()
            row_file = out / f"{precision}.json"
            done = subprocess.run(
                [*me, "measure", str(checkpoint), precision, "--json", str(row_file),
                 "--new-tokens", str(args.new_tokens)],
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode == 0:
                row = json.loads(row_file.read_text())
            else:
                reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
                row = {"precision": precision, "failed": reason[:200]}
                print(done.stderr[-4000:], file=sys.stderr)
            rows.append(row)
            print(f"{precision}: {time.perf_counter() - began:.0f} s", flush=True)
            # Written as it grows: a check stopped at its time limit keeps the rows it made.
            (out / "gpu-table.md").write_text(_titled(rows, args))
    print(_titled(rows, args))


def _titled(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    device = next((r["device"] for r in rows if "device" in r), "?")
    shape = "a tiny shape" if args.tiny else "Llama-2-7B layer shapes"
    return (
        f"{device}, {shape}, {args.layers} layers, random weights, {args.new_tokens} new tokens\n\n"
        + table(rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    built = commands.add_parser("build", help="save the random checkpoint")
    built.add_argument("directory", type=Path)
    built.add_argument("--layers", type=int, required=True)
    built.add_argument("--tiny", action="store_true")
    measured = commands.add_parser("measure", help="one precision, in this process")
    measured.add_argument("directory", type=Path)
    measured.add_argument("precision")
    measured.add_argument("--json", type=Path, required=True)
    measured.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--layers", type=int, default=32, help="decoder layers (32: the 7B)")
    parser.add_argument("--precisions", default="fp16,bf16,int8,nf4")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", default="gpu-check-out")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape, for any device")
    args = parser.parse_args()
    if args.command == "build":
        build(args.directory, args.layers, args.tiny)
    elif args.command == "measure":
        row = measure(args.directory, args.precision, args.new_tokens, prompt_words=64)
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    else:
        run(args)


if __name__ == "__main__":
    main()
