"""The precision strategy interface, modelled on transformers' `HfQuantizer`.

A strategy says what it needs (packages, bf16 support) before anything loads, so a precision the
device cannot run fails fast with a reason and an alternative instead of a stack trace, and says
how transformers loads it. A new backend is one new module with one subclass, registered in
`quanteval_worker.precisions`.
"""

import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from quanteval.api.errors import CannotLoadError
from quanteval.api.result import CheckpointQuantization
from quanteval.precisions import Precision
from quanteval_worker.device import DeviceInfo

Bf16Mode = Literal["native", "emulated", "unused"]


@dataclass(frozen=True)
class Needs:
    """What a method needs to run: importable packages, devices, a compute capability."""

    what: str  # "precision hqq-4bit", "native gptq checkpoint": the subject of the refusal
    packages: tuple[str, ...] = ()
    devices: frozenset[str] = frozenset({"cpu", "cuda"})
    min_capability: tuple[int, int] | None = None
    alternative: str = "fp16"
    install: str = "pip install 'quanteval[worker]'"


def check_needs(needs: Needs, device: DeviceInfo) -> None:
    """Raise CannotLoadError (exit 4) with the reason and what to do instead."""
    for package in needs.packages:
        if importlib.util.find_spec(package) is None:
            raise CannotLoadError(
                f"{needs.what} needs {package}, which is not installed ({needs.install})"
            )
    if device.kind not in needs.devices:
        raise CannotLoadError(
            f"{needs.what} runs only on {' or '.join(sorted(needs.devices))}, not on "
            f"{device.describe()}: use {needs.alternative} here, or run it on a GPU node "
            "(spec.resources.gpus)"
        )
    needed = needs.min_capability if device.kind == "cuda" else None
    if needed and device.capability is not None and device.capability < needed:
        raise CannotLoadError(
            f"{needs.what} needs compute capability {needed[0]}.{needed[1]} or later, which "
            f"{device.describe()} does not have: use {needs.alternative}"
        )


class PrecisionStrategy:
    """How one family of precisions loads.

    Attributes:
        required_packages: importable names the strategy needs, with the install hint.
        dtype: the torch dtype of the weights (torch dtypes) or of the modules a quantization
            method leaves alone.
        uses_bf16: whether the weights or the compute are bf16 (checked against the device).
    """

    # The precision to suggest where this one cannot run (for the error message).
    alternative: ClassVar[str]
    required_packages: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = Needs.install  # how to get the required packages
    # Where the method's kernels run: a CPU run of a GPU-only method is refused before loading.
    devices: ClassVar[frozenset[str]] = frozenset({"cpu", "cuda"})
    # The lowest NVIDIA compute capability the method's kernels need (None: any).
    min_capability: ClassVar[tuple[int, int] | None] = None

    def __init__(self, precision: Precision, dtype: torch.dtype, uses_bf16: bool) -> None:
        self.precision = precision
        self.dtype = dtype
        self.uses_bf16 = uses_bf16

    def check(self, device: DeviceInfo, allow_bf16_emulation: bool = False) -> Bf16Mode:
        """Raise CannotLoadError when this precision cannot run on `device`; say how bf16 runs."""
        check_needs(
            Needs(
                f"precision {self.precision}",
                self.required_packages,
                self.devices,
                self.min_capability,
                self.alternative,
                self.install,
            ),
            device,
        )
        if not self.uses_bf16:
            return "unused"
        if device.native_bf16:
            return "native"
        if device.kind == "cuda" and not allow_bf16_emulation:
            raise CannotLoadError(
                f"precision {self.precision} computes in bf16, which {device.describe()} has no "
                f"native support for (compute capability 8.0 or later): use {self.alternative} "
                "instead, or set spec.resources.allowBf16Emulation: true to run it emulated "
                "(slower; the result records it)"
            )
        return "emulated"  # a CPU without bf16 instructions converts through fp32, as oneDNN does

    def check_checkpoint(
        self, checkpoint: CheckpointQuantization | None, source: str, device: DeviceInfo
    ) -> None:
        """Refuse a checkpoint this precision cannot take: one quantized before we got it (a
        GGUF file's `checkpoint` is its own; the other precisions take its dequantized weights)."""
        if checkpoint is not None and checkpoint.method != "gguf":
            does = (
                "would quantize it again"
                if type(self).quantization_config is not PrecisionStrategy.quantization_config
                else "would load it quantized all the same, under a name it is not"
            )
            raise CannotLoadError(
                f"{source} is already quantized ({checkpoint.describe()}): precision "
                f"{self.precision} {does}; use precision native for it as it is, or the "
                "checkpoint it was quantized from"
            )

    def quantization_config(self) -> Any:
        """The transformers quantization config, or None for a plain dtype. Override for methods."""
        return None

    def load_kwargs(
        self, device: DeviceInfo, max_memory: dict[int | str, str] | None
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        config = self.quantization_config()
        if config is not None:
            kwargs["quantization_config"] = config
        if device.kind == "cuda":
            kwargs["device_map"] = "auto"  # spreads a model over every GPU of the pod
            if max_memory:
                kwargs["max_memory"] = max_memory
        else:
            kwargs["device_map"] = {"": "cpu"}
        return kwargs
