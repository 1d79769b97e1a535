"""The report of runs on several engines: each compared on its own engine, the engine effect in
the same family, memory across engines marked, and each run known by its spec, not its id."""

import csv
import io
from pathlib import Path

import pytest

from quanteval.api.layout import RUN_SPEC_FILE
from quanteval.api.runspec import RunSpec
from quanteval.api.spec import parse_manifest
from quanteval.api.termination import ReportMessage
from quanteval.engines import Engine
from quanteval.matrix import build_run_spec, expand
from quanteval.precisions import Precision
from quanteval.report import BuiltReport, build_report
from quanteval.report.schema import RunReport
from quanteval.report.tables import TABLE_HEADERS, to_csv
from quanteval.report.verdicts import report_termination_message
from tests.builders import Samples, make_result, write_run

from .conftest import Manifest

SAMPLES: Samples = {
    (prompt, emotion, 0): (f"text {prompt} {emotion}", 0.3 + 0.1 * prompt)
    for prompt in range(1, 6)
    for emotion in ("anger", "joy")
}
TRANSFORMERS = {"engine": {"name": "transformers", "version": "5.24.0"}}
VLLM = {"engine": {"name": "vllm", "version": "0.32.0", "kvCacheBytes": 2**30}}
LLAMA_CPP = {"engine": {"name": "llama.cpp", "version": "0.3.36"}}

RUNS = [  # id, precision, engine, environment, f1, weights, peak, seconds
    ("m-bf16", Precision.BF16, Engine.AUTO, TRANSFORMERS, 0.60, 2000, 5000, 20.0),
    ("m-bf16-vllm", Precision.BF16, Engine.VLLM, VLLM, 0.62, 2000, 9000, 10.0),
    ("m-w8a8-int8-vllm", Precision.W8A8_INT8, Engine.VLLM, VLLM, 0.58, 1000, 8000, 9.0),
    ("m-native-llamacpp", Precision.NATIVE, Engine.LLAMA_CPP, LLAMA_CPP, 0.55, 600, 1500, 8.0),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def built(root: Path) -> BuiltReport:
    for run_id, precision, engine, environment, f1, weights, peak, seconds in RUNS:
        result = make_result(
            "m",
            precision,
            f1=f1,
            weights=weights,
            peak=peak,
            seconds=seconds,
            baseline=Precision.BF16,
        ).model_copy(update={"run_id": run_id, "engine": engine, "environment": environment})
        write_run(root, run_id, result, SAMPLES)  # fmt: skip
    return build_report(str(root))


def _runs(built: BuiltReport) -> dict[str, RunReport]:
    return {r.run_id: r for r in built.report.runs}


def test_each_run_compares_with_the_baseline_on_its_own_engine(built: BuiltReport) -> None:
    runs = _runs(built)

    vllm = runs["m-w8a8-int8-vllm"].vs_baseline
    assert vllm is not None
    assert vllm.baseline_run_id == "m-bf16-vllm"
    assert vllm.memory_comparable
    assert vllm.weights_saving_pct == pytest.approx(50.0)
    # llama.cpp runs no baseline precision: its run compares with the default engine's.
    gguf = runs["m-native-llamacpp"].vs_baseline
    assert gguf is not None
    assert gguf.baseline_run_id == "m-bf16"
    assert not gguf.memory_comparable
    assert runs["m-bf16-vllm"].is_baseline and runs["m-bf16"].is_baseline


def test_the_engine_effect_is_a_comparison_of_the_same_family(
    built: BuiltReport, root: Path
) -> None:
    report = built.report
    [effect] = report.engine_effects

    assert (effect.run_id, effect.engine) == ("m-bf16-vllm", Engine.VLLM)
    assert effect.vs.baseline_run_id == "m-bf16"
    assert effect.vs.time_ratio == pytest.approx(0.5)
    assert not effect.vs.memory_comparable
    assert effect.vs.paired is not None
    tested = [r.vs_baseline.paired for r in report.runs if r.vs_baseline and r.vs_baseline.paired]
    # Two runs against their baselines, and the engine effect: one family of three.
    assert {t.family_size for t in [*tested, effect.vs.paired]} == {3}
    assert "## Engine effect" in built.files.markdown
    assert "the texts differ" in built.files.markdown
    assert 'id="engine-effect"' in (root / "report.html").read_text()


def test_memory_across_engines_is_marked_and_kept_apart(built: BuiltReport, root: Path) -> None:
    report = built.report
    markdown = built.files.markdown

    assert "‡ on a memory %: the two ran on different engines" in markdown
    assert "different devices" not in markdown  # every run here computed on the CPU
    # A front per kind of memory: w8a8-int8 on vLLM (8000 bytes) is on vLLM's front, though
    # m-bf16 on transformers (5000 bytes, higher F1) would dominate it on one front.
    assert set(report.pareto_front) == {r[0] for r in RUNS}
    rows = list(csv.DictReader(io.StringIO((root / "report.csv").read_text())))
    assert {r["runId"]: r["engine"] for r in rows}["m-bf16-vllm"] == "vllm"
    assert {r["runId"]: r["memoryComparable"] for r in rows}["m-native-llamacpp"] == "false"


def test_a_run_that_left_only_its_spec_is_known_by_it(
    tmp_path: Path, quickstart_dict: Manifest
) -> None:
    """No id is parsed: a run that failed after it started says what it was in runspec.json."""
    quickstart_dict["spec"]["models"] = [{"name": "m-int8", "source": "org/model"}]
    quickstart_dict["spec"]["precisions"] = ["bf16", "w4a16-g32"]
    quickstart_dict["spec"]["engines"] = ["vllm"]
    manifest = parse_manifest(quickstart_dict)
    run = expand(manifest.spec)[1]
    spec = build_run_spec(manifest, run, tmp_path.as_uri())
    write_run(tmp_path, run.id, None)
    (tmp_path / "runs" / run.id / RUN_SPEC_FILE).write_text(spec.to_json())

    [record] = build_report(str(tmp_path)).report.runs

    assert RunSpec.model_validate_json(spec.to_json()).run_id == "m-int8-w4a16-g32-vllm"
    assert (record.model, record.precision, record.engine) == (
        "m-int8",
        Precision.W4A16_G32,
        Engine.VLLM,
    )
    assert record.state == "Failed"


def test_the_report_jobs_message_carries_the_engine_effect_to_the_status(
    built: BuiltReport,
) -> None:
    message = ReportMessage.parse(report_termination_message(built.report))

    assert message is not None
    verdicts = message.verdicts()
    assert verdicts["m-bf16-vllm"]["against"] == "m-bf16"  # the engine effect, named
    assert "against" not in verdicts["m-w8a8-int8-vllm"]  # its own engine's baseline: as ever


HELD = (
    "computed on the CPU (llama.cpp) while holding 1 GPU (NVIDIA H100 80GB HBM3), unused: they "
    "are counted in gpuSeconds and dollars; with resources.gpus: auto its Job asks for none"
)
DEVICES = [  # id, precision, environment, device, f1, weights, peak, seconds, dollars
    ("d-bf16", Precision.BF16, TRANSFORMERS, "cuda", 0.60, 2000, 5000, 20.0, 1.0),
    ("d-int8", Precision.INT8, TRANSFORMERS, "cuda", 0.50, 1000, 3000, 30.0, 1.5),
    # A GGUF file at native on auto: llama.cpp, on the CPU of the GPU node it was given.
    ("d-native", Precision.NATIVE, LLAMA_CPP, "cpu", 0.55, 600, 1500, 40.0, 0.2),
]


@pytest.fixture(scope="module")
def across_devices(tmp_path_factory: pytest.TempPathFactory) -> BuiltReport:
    root = tmp_path_factory.mktemp("devices")
    for run_id, precision, environment, device, f1, weights, peak, seconds, dollars in DEVICES:
        made = make_result(
            "d", precision, f1=f1, weights=weights, peak=peak, seconds=seconds,
            baseline=Precision.BF16,
        )  # fmt: skip
        result = made.model_copy(
            update={
                "run_id": run_id, "environment": environment, "device": device,
                "metrics": made.metrics.model_copy(update={"dollars": dollars}),
                "warnings": [HELD] if device == "cpu" else [],
            }
        )  # fmt: skip
        write_run(root, run_id, result, SAMPLES)
    return build_report(str(root))


def _cells(markdown: str, run_id: str) -> dict[str, str]:
    """The run's row of the comparison table, by header."""
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {run_id} "))
    return dict(zip(TABLE_HEADERS, (c.strip() for c in row.strip("|").split(" | ")), strict=True))


def test_a_run_on_another_device_is_marked_and_kept_apart(across_devices: BuiltReport) -> None:
    report, markdown = across_devices.report, across_devices.files.markdown
    cpu, gpu = _cells(markdown, "d-native"), _cells(markdown, "d-int8")

    # Against the GPU baseline, the CPU run's memory, time and dollars are another machine's.
    assert (cpu["memory saving %"], cpu["time ×"], cpu["$ ×"]) == ("+70.0 ‡", "2.00 ‡", "0.20 ‡")
    assert (gpu["memory saving %"], gpu["time ×"], gpu["$ ×"]) == ("+40.0", "1.50", "1.50")
    assert "‡ on a memory %, time × or $ ×: the two computed on different devices" in markdown
    assert "kept out of each other's Pareto front and out of the claim check" in markdown
    # On one front the CPU run (F1 0.55, 1500 bytes, $0.20) would dominate int8 (0.50, 3000
    # bytes, $1.50); each device has its own.
    assert set(report.pareto_front) == {"d-bf16", "d-int8", "d-native"}
    assert set(report.pareto_front_dollars or ()) == {"d-bf16", "d-native"}  # bf16 beats int8
    # The GPU its Job held, unused, is said where the run's notes are.
    assert f"- d-native: {HELD}" in markdown
    assert "the two computed on different devices" in Path(across_devices.files.html).read_text()
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert {r["runId"]: r["timeComparable"] for r in rows} == {
        "d-bf16": "true", "d-int8": "true", "d-native": "false",
    }  # fmt: skip
