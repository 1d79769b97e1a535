"""The result of one run (`result.json`, versioned) and its compact termination message."""

import json
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from quanteval.precisions import Precision
from quanteval.runspec import EvaluationRef

RESULT_SCHEMA: Final = "quanteval.io/result/v1"
RESULT_FILE = "result.json"
GENERATIONS_FILE = "generations.jsonl"
# The kubelet keeps at most 4096 bytes of a termination message; beyond that the JSON would break.
TERMINATION_MESSAGE_LIMIT = 4096


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


class RunMetrics(_Model):
    """The headline numbers of a run; the names are shared with the QuantEval status."""

    f1_macro: float
    accuracy: float
    intensity: float
    distinct1: float
    distinct2: float
    weights_bytes: int
    peak_memory_bytes: int
    load_peak_memory_bytes: int
    generation_peak_memory_bytes: int
    load_seconds: float
    generation_seconds: float
    tokens_per_second: float
    latency_p50_ms: float
    latency_p95_ms: float
    generated_tokens: int
    samples: int


class EmotionScores(_Model):
    f1: float
    precision: float
    recall: float
    support: int
    intensity: float


class ConfusionMatrix(_Model):
    labels: list[str]  # rows: intended emotion; columns: predicted (may include other labels)
    predicted_labels: list[str]
    matrix: list[list[int]]


class RunResult(_Model):
    schema_version: Literal["quanteval.io/result/v1"] = RESULT_SCHEMA
    evaluation: EvaluationRef
    run_id: str
    model: str
    source: str
    revision: str | None
    precision: Precision
    baseline: Precision
    content_hash: str
    device: str
    batch_size: int
    metrics: RunMetrics
    per_emotion: dict[str, EmotionScores]
    confusion: ConfusionMatrix
    memory: dict[str, int]  # every memory figure measured, by name
    environment: dict[str, Any]
    started_at: str
    finished_at: str

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2) + "\n"


def _rounded_metrics(metrics: RunMetrics) -> dict[str, float | int]:
    values = metrics.model_dump(by_alias=True)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def termination_message(
    run_id: str,
    state: Literal["Succeeded", "Failed"],
    metrics: RunMetrics | None = None,
    reason: str = "",
    message: str = "",
) -> str:
    """Compact JSON for the pod's termination message, kept under the kubelet's 4096 bytes."""
    payload: dict[str, Any] = {"runId": run_id, "state": state}
    if reason:
        payload["reason"] = reason
    if metrics is not None:
        payload["metrics"] = _rounded_metrics(metrics)
    if message:
        payload["message"] = message
    text = json.dumps(payload, separators=(",", ":"))
    if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
        return text
    overflow = len(text.encode()) - TERMINATION_MESSAGE_LIMIT + len(" [truncated]") + 16
    payload["message"] = (
        message.encode()[: max(0, len(message.encode()) - overflow)].decode(errors="ignore")
        + " [truncated]"
    )
    return json.dumps(payload, separators=(",", ":"))
