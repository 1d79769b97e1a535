"""`quanteval-worker`: evaluate one run (model x precision) and write its results.

Input: a run spec (JSON) from `--spec FILE` or the QUANTEVAL_RUN_SPEC environment variable.
Output: `generations.jsonl`, then `result.json` (the commit mark), and a compact termination
message at QUANTEVAL_TERMINATION_LOG (default /dev/termination-log), on failure too.
Exit codes: see quanteval.exitcodes.
"""

import argparse
import json
import os
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from quanteval.exitcodes import ExitCode, InvalidSpecError, QuantEvalError
from quanteval.prompts import expand_samples
from quanteval.results import (
    GENERATIONS_FILE,
    RESULT_FILE,
    RunMetrics,
    RunResult,
    termination_message,
)
from quanteval.runspec import RunSpec
from quanteval.spec import format_validation_error
from quanteval.storage import Storage, open_storage
from quanteval.textstats import distinct_n, percentile
from quanteval_worker.events import emit, log

DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # bitsandbytes int8 on CPU warns on every matmul: tens of thousands of lines.
    warnings.filterwarnings("ignore", message=".*inputs will be cast from.*")
    warnings.filterwarnings("ignore", category=FutureWarning)


def read_run_spec(path: str | None) -> RunSpec:
    if path:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise InvalidSpecError(f"cannot read run spec {path}: {error.strerror}") from None
    else:
        text = os.environ.get("QUANTEVAL_RUN_SPEC", "")
        if not text:
            raise InvalidSpecError("no run spec: pass --spec FILE or set QUANTEVAL_RUN_SPEC")
    try:
        return RunSpec.model_validate_json(text)
    except ValidationError as error:
        raise InvalidSpecError(f"invalid run spec:\n{format_validation_error(error)}") from None


def write_termination_message(text: str) -> None:
    path = os.environ.get("QUANTEVAL_TERMINATION_LOG", DEFAULT_TERMINATION_LOG)
    try:
        Path(path).write_text(text)
    except OSError as error:
        log(f"cannot write the termination message to {path}: {error.strerror}", level="warning")


def existing_result(storage: Storage, spec: RunSpec, force: bool) -> RunResult | None:
    """The run's earlier result when it has the same content hash (resume)."""
    text = storage.read_text(RESULT_FILE)
    if text is None:
        return None
    try:
        previous = RunResult.model_validate_json(text)
    except ValidationError:
        previous = None
    if previous is not None and previous.content_hash == spec.content_hash and not force:
        return previous
    if not force:
        raise InvalidSpecError(
            f"{storage.uri}/{RESULT_FILE} holds a result of another configuration; "
            "write to another output location, or pass --force to replace it"
        )
    storage.delete(RESULT_FILE)  # never leave an old result.json beside new generations
    return None


def evaluate(spec: RunSpec, storage: Storage) -> RunResult:
    import torch

    from quanteval_worker.classifier import load_classifier, predict
    from quanteval_worker.environment import describe_environment
    from quanteval_worker.generation import Generator
    from quanteval_worker.loading import (
        actual_dtypes,
        gpu_memory_caps,
        load_causal_lm,
        load_tokenizer,
        pick_device,
        weights_bytes,
    )
    from quanteval_worker.memory import MemoryMeter
    from quanteval_worker.precision_strategies import STRATEGIES
    from quanteval_worker.scoring import score
    from quanteval_worker.sources import resolve_source

    started_at = datetime.now(UTC).isoformat()
    device = pick_device()
    strategy = STRATEGIES[spec.precision]
    strategy.check(device)
    log("resolving model", source=spec.model.source, precision=spec.precision.value, device=device)
    source = resolve_source(
        spec.model.source, spec.model.revision, spec.s3_endpoint, spec.s3_region
    )
    tokenizer = load_tokenizer(source)
    samples = expand_samples(
        spec.prompts, spec.emotions, spec.generation.samples_per_prompt, spec.generation.seed
    )

    meter = MemoryMeter(device)
    meter.begin()
    began = time.perf_counter()
    model = load_causal_lm(source, strategy, device, gpu_memory_caps(spec.gpu_memory_gib))
    load_seconds = time.perf_counter() - began
    load_peak = meter.end("load")
    model_bytes = weights_bytes(model)
    dtypes = actual_dtypes(model)
    log("model loaded", seconds=round(load_seconds, 2), weightsBytes=model_bytes, dtypes=dtypes)

    def on_batch(done: int, total: int) -> None:
        emit("progress", done=done, total=total)

    emit("progress", done=0, total=len(samples))
    generator = Generator(model, tokenizer, spec.generation, device)
    requested = spec.generation.batch_size
    meter.begin()
    began = time.perf_counter()
    generations, batch_size = generator.generate_all(
        samples, None if requested == "auto" else requested, on_batch
    )
    generation_seconds = time.perf_counter() - began
    generation_peak = meter.end("generation")
    del model, generator
    if device == "cuda":
        torch.cuda.empty_cache()

    log("classifying", samples=len(generations))
    classifier = load_classifier(spec.classifier, spec.emotions, spec.s3_endpoint, spec.s3_region)
    texts = [g.text for g in generations]
    predictions = predict(classifier, texts)
    intended = [g.sample.emotion for g in generations]
    intended_probability = [
        p.probabilities.get(e, 0.0) for p, e in zip(predictions, intended, strict=True)
    ]
    scores = score(intended, [p.label for p in predictions], intended_probability, spec.emotions)

    lines = []
    for g, p in zip(generations, predictions, strict=True):
        record = {
            "key": g.sample.key,
            "promptId": g.sample.prompt_id,
            "emotion": g.sample.emotion,
            "sampleIndex": g.sample.sample_index,
            "seed": g.sample.seed,
            "prompt": g.sample.prompt,
            "text": g.text,
            "predicted": p.label,
            "probabilities": {k: round(v, 5) for k, v in p.probabilities.items()},
            "promptTokens": g.prompt_tokens,
            "newTokens": g.new_tokens,
            "batchLatencyMs": round(g.batch_seconds * 1000, 1),
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    storage.write_text(GENERATIONS_FILE, "\n".join(lines) + "\n")

    batch_latencies = sorted({g.batch_seconds for g in generations})
    new_tokens = sum(g.new_tokens for g in generations)
    metrics = RunMetrics(
        f1_macro=scores.f1_macro,
        accuracy=scores.accuracy,
        intensity=scores.intensity,
        distinct1=distinct_n(texts, 1),
        distinct2=distinct_n(texts, 2),
        weights_bytes=model_bytes,
        # Serving memory: weights plus generation's activations and KV cache. The load peak
        # (bitsandbytes quantizes from higher-precision weights) is its own figure.
        peak_memory_bytes=generation_peak,
        load_peak_memory_bytes=load_peak,
        generation_peak_memory_bytes=generation_peak,
        load_seconds=load_seconds,
        generation_seconds=generation_seconds,
        tokens_per_second=new_tokens / generation_seconds if generation_seconds else 0.0,
        latency_p50_ms=percentile(batch_latencies, 50) * 1000,
        latency_p95_ms=percentile(batch_latencies, 95) * 1000,
        generated_tokens=new_tokens,
        samples=len(generations),
    )
    environment = describe_environment(device) | {"dtypes": dtypes}
    return RunResult(
        evaluation=spec.evaluation,
        run_id=spec.run_id,
        model=spec.model.name,
        source=spec.model.source,
        revision=spec.model.revision,
        precision=spec.precision,
        baseline=spec.baseline,
        content_hash=spec.content_hash,
        device=device,
        batch_size=batch_size,
        metrics=metrics,
        per_emotion=scores.per_emotion,
        confusion=scores.confusion,
        memory=meter.figures | {"weightsBytes": model_bytes},
        environment=environment,
        started_at=started_at,
        finished_at=datetime.now(UTC).isoformat(),
    )


def run(spec_path: str | None, force: bool) -> int:
    run_id = "unknown"
    try:
        spec = read_run_spec(spec_path)
        run_id = spec.run_id
        storage = open_storage(spec.output_uri, spec.s3_endpoint, spec.s3_region)
        previous = existing_result(storage, spec, force)
        if previous is not None:
            log("result exists with the same content hash; skipping", uri=storage.uri)
            write_termination_message(
                termination_message(run_id, "Succeeded", previous.metrics, reason="AlreadyComplete")
            )
            return ExitCode.OK
        result = evaluate(spec, storage)
        storage.write_text(RESULT_FILE, result.to_json())  # last: marks the run complete
    except QuantEvalError as error:
        log(error.message, level="error", reason=error.reason)
        write_termination_message(
            termination_message(run_id, "Failed", reason=error.reason, message=error.message)
        )
        return error.exit_code
    except MemoryError:
        message = "out of memory (host RAM)"
        log(message, level="error", reason="OutOfMemory")
        write_termination_message(
            termination_message(run_id, "Failed", reason="OutOfMemory", message=message)
        )
        return ExitCode.OUT_OF_MEMORY
    log("run complete", uri=storage.uri, f1Macro=round(result.metrics.f1_macro, 4))
    write_termination_message(termination_message(run_id, "Succeeded", result.metrics))
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quanteval-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="run spec JSON file (default: $QUANTEVAL_RUN_SPEC)")
    parser.add_argument("--force", action="store_true", help="replace an existing result")
    args = parser.parse_args(argv)
    _quiet_libraries()
    return run(args.spec, args.force)


if __name__ == "__main__":
    sys.exit(main())
