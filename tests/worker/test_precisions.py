"""The precision registry: one strategy per precision, and what each refuses before loading."""

import pytest

from quanteval.api.errors import CannotLoadError, ExitCode
from quanteval.api.result import CheckpointQuantization
from quanteval.precisions import Precision
from quanteval_worker.device import DeviceInfo
from quanteval_worker.precisions import STRATEGIES, strategy_for

T4 = DeviceInfo("cuda", gpu_names=("Tesla T4",), capability=(7, 5))
A100 = DeviceInfo("cuda", gpu_names=("NVIDIA A100-SXM4-80GB",), capability=(8, 0))


def test_every_precision_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(Precision)
    assert all(strategy_for(p).precision == p for p in Precision)


@pytest.mark.parametrize(
    ("precision", "alternative"),
    [(Precision.BF16, "use fp16"), (Precision.NF4, "use int8"), (Precision.FP4, "use int8")],
)
def test_bf16_on_a_gpu_without_native_bf16_is_refused_with_the_alternative(
    precision: Precision, alternative: str
) -> None:
    with pytest.raises(CannotLoadError) as error:
        strategy_for(precision).check(T4)
    assert "Tesla T4 (compute capability 7.5)" in error.value.message
    assert alternative in error.value.message
    assert "allowBf16Emulation" in error.value.message
    assert error.value.exit_code == 4


def test_bf16_emulation_runs_only_when_asked_and_says_so() -> None:
    assert strategy_for(Precision.BF16).check(T4, allow_bf16_emulation=True) == "emulated"
    assert strategy_for(Precision.NF4).check(A100) == "native"
    assert strategy_for(Precision.FP16).check(T4) == "unused"
    assert strategy_for(Precision.INT8).check(T4) == "unused"


def test_the_lowest_capability_of_the_pods_gpus_decides() -> None:
    mixed = DeviceInfo("cuda", gpu_names=("A100", "V100"), capability=(7, 0))
    assert not mixed.native_bf16


def test_a_cpu_runs_bf16_natively_only_with_bf16_instructions() -> None:
    assert strategy_for(Precision.BF16).check(DeviceInfo("cpu", cpu_bf16=True)) == "native"
    assert strategy_for(Precision.BF16).check(DeviceInfo("cpu", cpu_bf16=False)) == "emulated"


def test_bitsandbytes_strategies_record_the_studys_settings() -> None:
    int8 = strategy_for(Precision.INT8).quantization_config()
    assert int8.load_in_8bit and int8.llm_int8_threshold == 6.0
    nf4 = strategy_for(Precision.NF4).quantization_config()
    assert nf4.bnb_4bit_quant_type == "nf4" and str(nf4.bnb_4bit_compute_dtype) == "torch.bfloat16"
    assert strategy_for(Precision.FP32).quantization_config() is None


CPU = DeviceInfo("cpu", cpu_bf16=True)
H100 = DeviceInfo("cuda", gpu_names=("NVIDIA H100 80GB HBM3",), capability=(9, 0))


@pytest.mark.parametrize(
    ("precision", "alternative"),
    [
        (Precision.TORCHAO_INT4WO, "use int8"),
        (Precision.HQQ_4BIT, "use nf4"),
        (Precision.HQQ_3BIT, "use nf4"),
        (Precision.HQQ_2BIT, "use nf4"),
    ],
)
def test_a_gpu_only_method_on_a_cpu_is_refused_before_loading_with_exit_4(
    precision: Precision, alternative: str
) -> None:
    with pytest.raises(CannotLoadError) as error:
        strategy_for(precision).check(CPU)
    assert f"precision {precision} runs only on cuda, not on the CPU" in error.value.message
    assert alternative in error.value.message
    assert error.value.exit_code == 4
    strategy_for(precision).check(H100)  # where it runs, nothing is refused


def test_float8_needs_a_gpu_with_float8_in_hardware_and_runs_on_a_cpu() -> None:
    with pytest.raises(CannotLoadError) as error:
        strategy_for(Precision.TORCHAO_FLOAT8).check(A100)
    assert "needs compute capability 8.9 or later" in error.value.message
    assert "A100-SXM4-80GB (compute capability 8.0)" in error.value.message
    assert strategy_for(Precision.TORCHAO_FLOAT8).check(H100) == "native"
    assert strategy_for(Precision.TORCHAO_FLOAT8).check(CPU) == "native"


def test_the_configs_say_the_backend_the_name_says() -> None:
    int8wo = strategy_for(Precision.TORCHAO_INT8WO).quantization_config()
    assert int8wo.quant_method == "torchao"
    assert type(int8wo.quant_type).__name__ == "Int8WeightOnlyConfig"
    int4wo = strategy_for(Precision.TORCHAO_INT4WO).quantization_config().quant_type
    assert (int4wo.group_size, str(int4wo.int4_packing_format)) == (128, "tile_packed_to_4d")
    hqq = [strategy_for(p).quantization_config() for p in (Precision.HQQ_4BIT, Precision.HQQ_2BIT)]
    weights = [c.quant_config["weight_quant_params"] for c in hqq]
    assert [w["nbits"] for w in weights] == [4, 2]
    assert all(w["group_size"] == 64 for w in weights)


NATIVE_CASES = [
    pytest.param(
        CheckpointQuantization(method="gptq", bits=4, group_size=128),
        DeviceInfo("cuda", ("A100",), (8, 0)),
        "needs gptqmodel, which is not installed",
        id="gptq-kernels-not-in-the-image",
    ),
    pytest.param(
        CheckpointQuantization(method="awq", bits=4, group_size=128),
        DeviceInfo("cpu"),
        "needs awq, which is not installed",
        id="awq-kernels-not-in-the-image",
    ),
    pytest.param(
        CheckpointQuantization(method="fp8", bits=8, kind="float8"),
        DeviceInfo("cuda", ("A100",), (8, 0)),
        "8.9",
        id="fp8-below-compute-capability-8.9",
    ),
    pytest.param(None, DeviceInfo("cpu"), "quantization_config", id="a-plain-checkpoint"),
]


@pytest.mark.parametrize(("checkpoint", "device", "named"), NATIVE_CASES)
def test_native_refuses_a_checkpoint_the_pod_cannot_run_before_it_loads(
    checkpoint: CheckpointQuantization | None, device: DeviceInfo, named: str
) -> None:
    with pytest.raises(CannotLoadError) as refused:
        STRATEGIES[Precision.NATIVE].check_checkpoint(checkpoint, "org/model", device)

    assert named in refused.value.message
    assert refused.value.exit_code == ExitCode.CANNOT_LOAD


@pytest.mark.parametrize(
    "checkpoint",
    [
        CheckpointQuantization(method="compressed-tensors", bits=4, group_size=128),
        CheckpointQuantization(method="bitsandbytes", bits=4, group_size=64, kind="nf4"),
        CheckpointQuantization(method="gguf", bits=4, group_size=32, kind="Q4_1"),
    ],
    ids=["compressed-tensors", "bitsandbytes", "gguf"],
)
def test_native_takes_a_checkpoint_that_runs_on_a_cpu(checkpoint: CheckpointQuantization) -> None:
    STRATEGIES[Precision.NATIVE].check_checkpoint(checkpoint, "org/model", DeviceInfo("cpu"))
