"""What a pre-quantized checkpoint's quantization_config says: method, bits, group size."""

import json
from pathlib import Path

import pytest

from quanteval.api.result import CheckpointQuantization
from quanteval.checkpoints import describe, read_checkpoint_quantization

# Each as transformers (or the method's own library) writes it into config.json.
CONFIGS = [
    pytest.param(
        {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False},
        CheckpointQuantization(method="gptq", bits=4, group_size=128),
        "gptq, 4-bit, group 128",
        id="gptq",
    ),
    pytest.param(
        {"quant_method": "gptq", "bits": 8, "group_size": -1},
        CheckpointQuantization(method="gptq", bits=8),
        "gptq, 8-bit",
        id="gptq-one-group-a-row",
    ),
    pytest.param(
        {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"},
        CheckpointQuantization(method="awq", bits=4, group_size=128, kind="gemm"),
        "awq gemm, 4-bit, group 128",
        id="awq",
    ),
    pytest.param(
        {"quant_method": "bitsandbytes", "load_in_8bit": True},
        CheckpointQuantization(method="bitsandbytes", bits=8, kind="LLM.int8"),
        "bitsandbytes LLM.int8, 8-bit",
        id="bitsandbytes-int8",
    ),
    pytest.param(
        {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
        CheckpointQuantization(method="bitsandbytes", bits=4, group_size=64, kind="nf4"),
        "bitsandbytes nf4, 4-bit, group 64",
        id="bitsandbytes-nf4",
    ),
    pytest.param(
        {
            "quant_method": "torchao",
            "quant_type": {
                "default": {"_type": "Int4WeightOnlyConfig", "_data": {"group_size": 128}}
            },
        },
        CheckpointQuantization(
            method="torchao", bits=4, group_size=128, kind="Int4WeightOnlyConfig"
        ),
        "torchao Int4WeightOnlyConfig, 4-bit, group 128",
        id="torchao",
    ),
    pytest.param(
        {
            "quant_method": "compressed-tensors",
            "format": "pack-quantized",
            "config_groups": {
                "group_0": {
                    "targets": ["Linear"],
                    "weights": {
                        "num_bits": 4,
                        "type": "int",
                        "strategy": "group",
                        "group_size": 128,
                    },
                }
            },
        },
        CheckpointQuantization(
            method="compressed-tensors", bits=4, group_size=128, kind="int group"
        ),
        "compressed-tensors int group, 4-bit, group 128",
        id="compressed-tensors-w4a16",
    ),
    pytest.param(
        {"quant_method": "fp8", "activation_scheme": "dynamic"},
        CheckpointQuantization(method="fp8", bits=8, kind="float8"),
        "fp8 float8, 8-bit",
        id="fp8",
    ),
    pytest.param(
        {
            "quant_method": "hqq",
            "quant_config": {"weight_quant_params": {"nbits": 3, "group_size": 64}},
        },
        CheckpointQuantization(method="hqq", bits=3, group_size=64),
        "hqq, 3-bit, group 64",
        id="hqq",
    ),
    pytest.param(
        {"quant_method": "AQLM"},
        CheckpointQuantization(method="aqlm"),
        "aqlm",
        id="unknown-fields",
    ),
]


@pytest.mark.parametrize(("config", "expected", "text"), CONFIGS)
def test_describe(config: dict[str, object], expected: CheckpointQuantization, text: str) -> None:
    described = describe(config)

    assert described == expected
    assert described.describe() == text


def test_a_checkpoint_without_quantization_config_has_none(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))

    assert read_checkpoint_quantization(tmp_path) is None
    assert read_checkpoint_quantization(tmp_path / "missing") is None


def test_a_checkpoints_config_is_read(tmp_path: Path) -> None:
    quantization = {"quant_method": "gptq", "bits": 4, "group_size": 32}
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": quantization}))

    assert read_checkpoint_quantization(tmp_path) == CheckpointQuantization(
        method="gptq", bits=4, group_size=32
    )


def test_bytes_per_parameter_counts_the_group_scales() -> None:
    """4 bits a weight, plus a 16-bit scale and zero point shared by 128: 0.5 + 4/128 bytes."""
    gptq = CheckpointQuantization(method="gptq", bits=4, group_size=128)

    assert gptq.bytes_per_parameter == pytest.approx(0.5 + 4 / 128)
    assert CheckpointQuantization(method="aqlm").bytes_per_parameter is None
