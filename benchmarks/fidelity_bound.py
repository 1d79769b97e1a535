"""How close the stored fidelity figures come to the exact ones from full logits, and at what size.

Loads the quick start's model at its baseline and at each other precision in one process, scores
the quick start's reference corpus with full logits (quanteval.fidelity's corpus, the worker's own
loader and sequences), and prints, per stored-token budget: the mean kept mass, the file size in
quanteval.fidelity's format, and for each precision the stored KL bound beside the exact KL. No
pass/fail: the figures the README quotes.

    python benchmarks/fidelity_bound.py [--manifest manifests/examples/quickstart.yaml]
"""

import argparse
from typing import Any

import numpy as np
import torch

from quanteval.api.spec import load_manifest
from quanteval.fidelity import (
    KEPT_MASS,
    TokenDistributions,
    batch_budget,
    compare_fidelity,
    from_kept_tokens,
    joined,
)
from quanteval.matrix import build_run_spec, expand
from quanteval.precisions import Precision
from quanteval.prompts import expand_samples
from quanteval_worker.device import detect_device
from quanteval_worker.engines.base import mass_after
from quanteval_worker.fidelity import BATCH, reference_sequences
from quanteval_worker.loading import fetch_source, load_causal_lm, load_tokenizer
from quanteval_worker.precisions import strategy_for
from quanteval_worker.sources import resolve_source


def full_logprobs(model: Any, sequences: list[tuple[list[int], int]]) -> torch.Tensor:
    """[positions, vocab] log-probabilities of every scored position, in corpus order."""
    rows = []
    for tokens, begins in sequences:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tokens])).logits[0]
        # float64, as the worker's pass (engines.base.Engine.top_logprobs)
        rows.append(torch.log_softmax(logits[begins - 1 : len(tokens) - 1].double(), dim=-1))
    return torch.cat(rows)


def stored(
    logprobs: torch.Tensor, sequences: list[tuple[list[int], int]], budget: int
) -> TokenDistributions:
    """What the worker stores at `budget`: each batch of BATCH sequences cut within its share
    (batch_budget), the batches joined."""
    counts = [len(t) - b for t, b in sequences]
    values, ids = logprobs.sort(dim=-1, descending=True)
    rests = mass_after(values)
    parts, row = [], 0
    for start in range(0, len(sequences), BATCH):
        batch = sequences[start : start + BATCH]
        rows = slice(row, row + sum(counts[start : start + BATCH]))
        row = rows.stop
        target = np.concatenate([np.array(t[b:], dtype=np.int32) for t, b in batch])
        target_lp = logprobs[rows].gather(1, torch.tensor(target, dtype=torch.long)[:, None])
        parts.append(
            from_kept_tokens(
                int(logprobs.shape[1]),
                np.concatenate(
                    [np.full(len(t) - b, start + i, np.int32) for i, (t, b) in enumerate(batch)]
                ),
                target,
                target_lp[:, 0].float().numpy(),
                list(ids[rows].numpy()),
                list(values[rows].float().numpy()),
                batch_budget(rows.stop - rows.start, sum(counts), budget),
                rest_logmass=list(rests[rows].numpy()),
            )
        )
    return joined(parts)


def exact_kl(base: torch.Tensor, run: torch.Tensor) -> float:
    return float((base.exp() * (base - run)).sum(dim=-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", default="manifests/examples/quickstart.yaml")
    parser.add_argument("--budgets", default="400000,800000,1600000,3200000")
    args = parser.parse_args()
    torch.manual_seed(0)
    manifest = load_manifest(args.manifest)
    spec = manifest.spec
    run = build_run_spec(manifest, expand(spec)[0], "file:///unused")
    source = fetch_source(resolve_source(run.model.source, run.model.revision))
    tokenizer = load_tokenizer(source)
    samples = expand_samples(
        run.prompts, run.emotions, spec.generation.samples_per_prompt, spec.generation.seed
    )
    sequences = reference_sequences(tokenizer, samples, spec.generation)
    device = detect_device()
    logprobs = {}
    for precision in [spec.baseline_precision, *spec.precisions]:
        if precision.value in logprobs:
            continue
        strategy = strategy_for(Precision(precision))
        strategy.check(device, allow_bf16_emulation=True)
        model = load_causal_lm(source, strategy, device)
        logprobs[precision.value] = full_logprobs(model, sequences)
        del model
    base_name = spec.baseline_precision.value
    base = logprobs[base_name]
    sorted_base = base.exp().sort(dim=-1, descending=True).values.cumsum(dim=-1)
    needed = (sorted_base < KEPT_MASS).sum(dim=-1) + 1
    print(
        f"{len(sequences)} sequences, {base.shape[0]} positions, vocabulary {base.shape[1]}; "
        f"tokens for {KEPT_MASS:.1%} of the {base_name} probability: median "
        f"{int(needed.median())}, mean {float(needed.float().mean()):.0f}, max {int(needed.max())}"
    )
    others = [p for p in logprobs if p != base_name]
    print(
        "| budget (tokens) | mean kept mass | file MB | "
        + " | ".join(f"{p} KL bound / exact" for p in others)
        + " |"
    )
    print("| ---: | ---: | ---: | " + " | ".join("---:" for _ in others) + " |")
    exact = {p: exact_kl(base, logprobs[p]) for p in others}
    for budget in (int(b) for b in args.budgets.split(",")):
        base_stored = stored(base, sequences, budget)
        cells = []
        for p in others:
            figures = compare_fidelity(base_stored, stored(logprobs[p], sequences, budget))
            cells.append(f"{figures.mean_kl:.5f} / {exact[p]:.5f}")
        print(
            f"| {budget:,} | {float(base_stored.kept_mass().mean()):.4%} | "
            f"{len(base_stored.to_bytes()) / 2**20:.2f} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
