"""What a pre-quantized checkpoint says about its own quantization: method, bits, group size.

Read from the `quantization_config` of its config.json as transformers writes it for each method
(GPTQ, AWQ, bitsandbytes, torchao, compressed-tensors, FP8, HQQ, ...), or from a GGUF file's
type. No torch here: `quanteval plan` sizes native checkpoints with it, the worker records it.
"""

import json
from pathlib import Path
from typing import Any

from quanteval.api.result import CheckpointQuantization

# torchao configs by class name: their weight bits.
_TORCHAO_BITS = {
    "Int8WeightOnlyConfig": 8,
    "Int8DynamicActivationInt8WeightConfig": 8,
    "Float8WeightOnlyConfig": 8,
    "Float8DynamicActivationFloat8WeightConfig": 8,
    "Int4WeightOnlyConfig": 4,
    "Int8DynamicActivationInt4WeightConfig": 4,
    "int8_weight_only": 8,
    "int4_weight_only": 4,
}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bitsandbytes(config: dict[str, Any]) -> tuple[int | None, int | None, str]:
    if config.get("load_in_8bit"):
        return 8, None, "LLM.int8"
    if config.get("load_in_4bit"):
        return 4, 64, str(config.get("bnb_4bit_quant_type", "fp4"))  # blocks of 64 weights
    return None, None, ""


def _torchao(config: dict[str, Any]) -> tuple[int | None, int | None, str]:
    quant_type = config.get("quant_type")
    if isinstance(quant_type, dict):
        entry = quant_type.get("default", next(iter(quant_type.values()), {}))
        name = str(entry.get("_type", "")) if isinstance(entry, dict) else ""
        data = entry.get("_data", {}) if isinstance(entry, dict) else {}
        group = _int(data.get("group_size")) if isinstance(data, dict) else None
        return _TORCHAO_BITS.get(name), group, name
    name = str(quant_type or "")
    kwargs = config.get("quant_type_kwargs") or {}
    return _TORCHAO_BITS.get(name), _int(kwargs.get("group_size")), name


def _compressed_tensors(config: dict[str, Any]) -> tuple[int | None, int | None, str]:
    groups = config.get("config_groups") or {}
    weights = [g.get("weights") or {} for g in groups.values() if isinstance(g, dict)]
    if not weights:
        return None, None, str(config.get("format", ""))
    first = weights[0]
    kind = f"{first.get('type', '')} {first.get('strategy', '')}".strip()
    return _int(first.get("num_bits")), _int(first.get("group_size")), kind


def _hqq(config: dict[str, Any]) -> tuple[int | None, int | None, str]:
    params = (config.get("quant_config") or {}).get("weight_quant_params") or config
    return _int(params.get("nbits")), _int(params.get("group_size")), ""


def describe(quantization_config: dict[str, Any]) -> CheckpointQuantization:
    """The method, bits and group size a checkpoint's quantization_config names (None where it
    does not say)."""
    method = str(quantization_config.get("quant_method", "unknown")).lower()
    bits, group, kind = None, None, ""
    if method == "bitsandbytes":
        bits, group, kind = _bitsandbytes(quantization_config)
    elif method == "torchao":
        bits, group, kind = _torchao(quantization_config)
    elif method == "compressed-tensors":
        bits, group, kind = _compressed_tensors(quantization_config)
    elif method == "hqq":
        bits, group, kind = _hqq(quantization_config)
    elif method in ("fp8", "fbgemm_fp8"):
        bits, kind = 8, "float8"
    else:  # gptq, awq, aqlm, eetq, ...: the common fields
        bits = _int(quantization_config.get("bits"))
        group = _int(quantization_config.get("group_size"))
        version = quantization_config.get("version") or quantization_config.get("checkpoint_format")
        kind = str(version or "")
    if group is not None and group <= 0:
        group = None  # GPTQ writes -1 for one group a row
    return CheckpointQuantization(method=method, bits=bits, group_size=group, kind=kind)


def read_checkpoint_quantization(folder: Path) -> CheckpointQuantization | None:
    """The checkpoint's own quantization, from its config.json; None when it has none."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    return describe(quantization) if isinstance(quantization, dict) else None
