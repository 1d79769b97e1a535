"""The pod's termination message: compact JSON that always fits the kubelet's 4096 bytes."""

import json
from typing import Any

import pytest

from quanteval.api.result import RunMetrics
from quanteval.api.states import RunState
from quanteval.api.termination import TERMINATION_MESSAGE_LIMIT, run_message


def _metrics() -> RunMetrics:
    return RunMetrics(
        f1_macro=0.512345678,
        accuracy=0.6,
        intensity=0.7,
        distinct1=0.4,
        distinct2=0.8,
        weights_bytes=123_456_789,
        peak_memory_bytes=987_654_321,
        load_peak_memory_bytes=500_000_000,
        generation_peak_memory_bytes=900_000_000,
        load_seconds=12.3456789,
        generation_seconds=45.6,
        tokens_per_second=88.8,
        latency_p50_ms=10.0,
        latency_p95_ms=20.0,
        generated_tokens=4480,
        samples=70,
    )


def _parse(text: str) -> dict[str, Any]:
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    payload = json.loads(text)
    assert isinstance(payload, dict)
    return payload


def test_limit_is_the_kubelets() -> None:
    assert TERMINATION_MESSAGE_LIMIT == 4096


def test_short_message_is_kept_whole() -> None:
    payload = _parse(
        run_message(
            "m-fp32", RunState.FAILED, reason="CannotLoad", message="no such file"
        ).to_text()
    )

    assert payload == {
        "runId": "m-fp32",
        "state": "Failed",
        "reason": "CannotLoad",
        "message": "no such file",
    }


def test_success_carries_rounded_metrics() -> None:
    payload = _parse(run_message("m-nf4", RunState.SUCCEEDED, metrics=_metrics()).to_text())

    assert payload["runId"] == "m-nf4"
    assert payload["state"] == "Succeeded"
    assert "reason" not in payload
    assert "message" not in payload
    assert payload["metrics"]["f1Macro"] == 0.512346  # 6 significant digits
    assert payload["metrics"]["loadSeconds"] == 12.3457
    assert payload["metrics"]["peakMemoryBytes"] == 987_654_321
    assert payload["metrics"]["samples"] == 70


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("x" * 10_000, id="ascii"),
        pytest.param("é" * 10_000, id="two-byte"),
        pytest.param("情" * 10_000, id="three-byte"),
        pytest.param("😀" * 10_000, id="emoji"),
        pytest.param('"\\\n' * 4_000, id="escaped"),
        pytest.param("\x01" * 10_000, id="control"),
        pytest.param("Traceback line\n" * 700, id="traceback"),
        pytest.param("a" * 4_100, id="just-over"),
    ],
)
def test_long_message_is_truncated_to_valid_json(message: str) -> None:
    text = run_message("m-int8", RunState.FAILED, reason="OutOfMemory", message=message).to_text()
    payload = _parse(text)

    assert payload["runId"] == "m-int8"
    assert payload["state"] == "Failed"
    assert payload["reason"] == "OutOfMemory"
    assert payload["message"].endswith("[truncated]")
    kept = payload["message"].removesuffix(" [truncated]")
    assert message.startswith(kept)


def test_long_message_with_metrics_keeps_the_metrics() -> None:
    text = run_message(
        "m-bf16", RunState.SUCCEEDED, metrics=_metrics(), reason="Note", message="y" * 10_000
    ).to_text()
    payload = _parse(text)

    assert payload["runId"] == "m-bf16"
    assert payload["state"] == "Succeeded"
    assert payload["reason"] == "Note"
    assert payload["metrics"]["samples"] == 70
    assert payload["message"].endswith("[truncated]")
    assert len(payload["message"]) > 1000  # truncated, not dropped


def test_ascii_truncation_keeps_most_of_the_message() -> None:
    payload = _parse(run_message("r", RunState.FAILED, reason="X", message="z" * 10_000).to_text())

    assert len(payload["message"]) > TERMINATION_MESSAGE_LIMIT - 200
