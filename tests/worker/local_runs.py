"""`quanteval run --local` of tiny models as a subprocess, and what it leaves; what a worker's
failure leaves (its exit code, termination message and stderr): shared by the worker suites."""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from quanteval.api.result import RunResult
from quanteval.api.termination import TERMINATION_MESSAGE_LIMIT
from quanteval.report.schema import Report, RunReport
from quanteval.report.serialize import from_json
from tests.builders import make_manifest

# A tiny Llama: hidden size 64 is one nf4 block of 64 weights a row, two groups of 32.
SHAPE = {
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
EMOTIONS = ["joy", "anger"]
PROMPTS = ["<class> sentence"]
SAMPLES = len(EMOTIONS) * len(PROMPTS)


def tiny_manifest(name: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    return make_manifest(name, models, emotions=EMOTIONS, prompts=PROMPTS)


def native_entry(name: str, source: Path) -> dict[str, Any]:
    """An entry of a checkpoint quantized from the entry `tiny`, loaded as it is."""
    return {"name": name, "source": str(source), "precisions": ["native"], "baselineModel": "tiny"}


@dataclass(frozen=True)
class Evaluation:
    out: Path
    rows: dict[str, dict[str, Any]]  # `quanteval run --output json`, by run id
    report: Report
    markdown: str
    stderr: str

    def result(self, run_id: str) -> RunResult:
        return RunResult.model_validate_json(
            (self.out / "runs" / run_id / "result.json").read_text()
        )

    def run(self, run_id: str) -> RunReport:
        return next(r for r in self.report.runs if r.run_id == run_id)


def run_locally(document: dict[str, Any], directory: Path) -> Evaluation:
    """The manifest evaluated by `quanteval run --local` into `directory`/out."""
    manifest = directory / "eval.yaml"
    manifest.write_text(yaml.safe_dump(document))
    out = directory / "out"
    command = [sys.executable, "-m", "quanteval_cli.main", "run", str(manifest), "--local"]
    process = subprocess.run(
        [*command, "--out", str(out), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    rows = {row["runId"]: row for row in json.loads(process.stdout)}
    report = from_json((out / "report.json").read_text())
    return Evaluation(out, rows, report, (out / "report.md").read_text(), process.stderr)


Outcome = tuple[int, dict[str, Any], str]  # exit code, termination message, stderr


def read_outcome(termination: Path, code: int, stderr: str, traceback_expected: bool) -> Outcome:
    message = json.loads(termination.read_text())
    assert len(termination.read_bytes()) <= TERMINATION_MESSAGE_LIMIT
    assert ("Traceback" in stderr) == traceback_expected, stderr[-3000:]
    return code, message, stderr


class Worker(Protocol):
    """The `worker` fixture: the worker's main() with `env` set."""

    def __call__(self, env: dict[str, str], *, traceback_expected: bool = False) -> Outcome: ...
