"""What a GGUF file says about its quantization (general.file_type), read without loading it."""

import re
from pathlib import Path

from quanteval.api.result import CheckpointQuantization

# ggml's block sizes: the legacy quants (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) share a scale among 32
# weights, the k-quants and i-quants among a super-block of 256.
_LEGACY_BLOCK = 32
_SUPER_BLOCK = 256
_TYPE = re.compile(r"^(?:MOSTLY_|ALL_)?(?P<kind>(?P<family>I?Q|BF|F)(?P<bits>\d+)\w*)$")


def describe_file_type(name: str) -> CheckpointQuantization:
    """`MOSTLY_Q4_1` (gguf.LlamaFileType's name) as method gguf, kind Q4_1, 4 bits, group 32."""
    match = _TYPE.match(name)
    if match is None:
        return CheckpointQuantization(method="gguf", kind=name.removeprefix("MOSTLY_"))
    kind, bits = match["kind"], int(match["bits"])
    if match["family"] in ("F", "BF"):
        return CheckpointQuantization(method="gguf", bits=bits, kind=kind)
    legacy = match["family"] == "Q" and "_K" not in kind
    group = _LEGACY_BLOCK if legacy else _SUPER_BLOCK
    return CheckpointQuantization(method="gguf", bits=bits, group_size=group, kind=kind)


def gguf_quantization(path: Path) -> CheckpointQuantization:
    """The quantization a GGUF file declares for its weights (its file type)."""
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(str(path)).fields.get("general.file_type")
    if field is None:
        return CheckpointQuantization(method="gguf")
    return describe_file_type(LlamaFileType(int(field.parts[field.data[0]][0])).name)


def parameters_by_type(path: Path) -> dict[str, int]:
    """Weights per ggml tensor type (Q4_1, Q8_0, F32, ...): what the file really holds."""
    from gguf import GGUFReader

    counts: dict[str, int] = {}
    for tensor in GGUFReader(str(path)).tensors:
        name = tensor.tensor_type.name
        counts[name] = counts.get(name, 0) + int(tensor.n_elements)
    return counts
