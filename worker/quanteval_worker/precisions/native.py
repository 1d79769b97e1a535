"""native: a checkpoint as it was quantized before we got it, loaded as it is.

Its config.json's quantization_config says the method (GPTQ, AWQ, bitsandbytes, torchao,
compressed-tensors, FP8, HQQ); transformers loads it through that method's quantizer, in the
checkpoint's own dtype. What each method needs is declared here, so that a checkpoint the pod
cannot run fails before it downloads kernels or loads weights. A GGUF file at native runs through
llama.cpp instead (quanteval_worker.engines.llama_cpp).
"""

from dataclasses import replace
from typing import Any

import torch

from quanteval.api.errors import CannotLoadError
from quanteval.api.result import CheckpointQuantization
from quanteval.precisions import Precision
from quanteval_worker.device import DeviceInfo
from quanteval_worker.precisions.base import Needs, PrecisionStrategy, check_needs

_CUDA = frozenset({"cuda"})
_NOT_IN_IMAGE = (
    "the worker image does not carry it: build an image with it, or use a compressed-tensors "
    "checkpoint of the model (llm-compressor's GPTQ and AWQ write that format)"
)
_INSTEAD = "the checkpoint it was quantized from, at a precision that runs here (nf4, int8)"
# What loading a checkpoint of each method needs (methods not named: transformers decides).
METHOD_NEEDS: dict[str, Needs] = {
    "bitsandbytes": Needs("", ("bitsandbytes",)),
    "torchao": Needs("", ("torchao",)),
    "compressed-tensors": Needs("", ("compressed_tensors",)),
    "gptq": Needs("", ("gptqmodel",), _CUDA, None, _INSTEAD, _NOT_IN_IMAGE),
    "awq": Needs("", ("awq",), _CUDA, None, _INSTEAD, _NOT_IN_IMAGE),
    "fp8": Needs("", (), _CUDA, (8, 9), _INSTEAD),
    "fbgemm_fp8": Needs("", ("fbgemm_gpu",), _CUDA, (9, 0), _INSTEAD, _NOT_IN_IMAGE),
    "hqq": Needs("", ("hqq",), _CUDA, None, _INSTEAD),
}
GGUF_NEEDS = Needs("a GGUF file at precision native (run by llama.cpp)", ("llama_cpp",))


class NativeStrategy(PrecisionStrategy):
    alternative = "fp16"

    def __init__(self) -> None:
        super().__init__(Precision.NATIVE, torch.float32, uses_bf16=False)

    def check_checkpoint(
        self, checkpoint: CheckpointQuantization | None, source: str, device: DeviceInfo
    ) -> None:
        if checkpoint is not None and checkpoint.method == "gguf":
            check_needs(GGUF_NEEDS, device)
            return
        if checkpoint is None:
            raise CannotLoadError(
                f"precision native loads a checkpoint as it was quantized, and {source} has no "
                "quantization_config in its config.json: use a precision that quantizes it "
                "(int8, nf4, torchao-int8wo, ...) or fp16 for it as it is"
            )
        needs = METHOD_NEEDS.get(checkpoint.method)
        if needs is not None:
            what = f"{source}, a {checkpoint.describe()} checkpoint,"
            check_needs(replace(needs, what=what), device)

    def load_kwargs(
        self, device: DeviceInfo, max_memory: dict[int | str, str] | None
    ) -> dict[str, Any]:
        # The checkpoint's own dtype and quantization_config: nothing of ours on top.
        return super().load_kwargs(device, max_memory) | {"dtype": "auto"}
