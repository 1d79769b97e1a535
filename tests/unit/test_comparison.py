"""Comparison of runs against their model's baseline, and the choice of the best run."""

import dataclasses

import pytest

from quanteval.comparison import (
    Comparison,
    RunOutcome,
    Terms,
    Unlike,
    best_run,
    compare,
    like_groups,
    peak_cause_note,
    unlike,
)
from quanteval.precisions import Precision

GIB = 2**30


def _outcome(
    model: str,
    precision: Precision,
    *,
    state: str = "Succeeded",
    f1: float | None = None,
    peak: int | None = None,
    weights: int | None = None,
    seconds: float | None = None,
) -> RunOutcome:
    return RunOutcome(
        run_id=f"{model}-{precision.value}",
        model=model,
        precision=precision,
        state=state,
        f1_macro=f1,
        peak_memory_bytes=peak,
        weights_bytes=weights,
        generation_seconds=seconds,
    )


def _by_id(rows: list[Comparison]) -> dict[str, Comparison]:
    return {row.outcome.run_id: row for row in rows}


FP32 = _outcome("m", Precision.FP32, f1=0.50, peak=10 * GIB, weights=8 * GIB, seconds=20.0)
BF16 = _outcome("m", Precision.BF16, f1=0.52, peak=6 * GIB, weights=4 * GIB, seconds=10.0)
NF4 = _outcome("m", Precision.NF4, f1=0.431, peak=3 * GIB, weights=1 * GIB, seconds=50.0)


def test_compare_against_the_baseline() -> None:
    rows = _by_id(compare([FP32, BF16, NF4], Precision.FP32))

    base = rows["m-fp32"]
    assert base.is_baseline is True
    assert base.memory_saving_pct == pytest.approx(0.0)
    assert base.weights_saving_pct == pytest.approx(0.0)
    assert base.f1_delta_pp == pytest.approx(0.0)
    assert base.time_ratio == pytest.approx(1.0)

    bf16 = rows["m-bf16"]
    assert bf16.is_baseline is False
    assert bf16.memory_saving_pct == pytest.approx(40.0)
    assert bf16.weights_saving_pct == pytest.approx(50.0)
    assert bf16.f1_delta_pp == pytest.approx(2.0)
    assert bf16.time_ratio == pytest.approx(0.5)

    nf4 = rows["m-nf4"]
    assert nf4.memory_saving_pct == pytest.approx(70.0)
    assert nf4.weights_saving_pct == pytest.approx(87.5)
    assert nf4.f1_delta_pp == pytest.approx(-6.9)
    assert nf4.time_ratio == pytest.approx(2.5)


def test_compare_keeps_the_order_of_the_outcomes() -> None:
    outcomes = [NF4, FP32, BF16]
    rows = compare(outcomes, Precision.FP32)

    assert [row.outcome for row in rows] == outcomes


def test_compare_against_another_baseline() -> None:
    rows = _by_id(compare([FP32, BF16, NF4], Precision.BF16))

    assert rows["m-bf16"].is_baseline is True
    assert rows["m-fp32"].is_baseline is False
    assert rows["m-fp32"].memory_saving_pct == pytest.approx(100.0 * (1 - 10 / 6))
    assert rows["m-fp32"].f1_delta_pp == pytest.approx(-2.0)
    assert rows["m-nf4"].memory_saving_pct == pytest.approx(50.0)
    assert rows["m-nf4"].time_ratio == pytest.approx(5.0)


def test_failed_run_has_no_comparison() -> None:
    failed = _outcome("m", Precision.INT8, state="Failed", f1=0.9, peak=GIB, seconds=1.0)
    rows = _by_id(compare([FP32, failed], Precision.FP32))

    row = rows["m-int8"]
    assert row.memory_saving_pct is None
    assert row.weights_saving_pct is None
    assert row.f1_delta_pp is None
    assert row.time_ratio is None


def _assert_no_numbers(row: Comparison) -> None:
    assert row.memory_saving_pct is None
    assert row.weights_saving_pct is None
    assert row.f1_delta_pp is None
    assert row.time_ratio is None


def test_missing_baseline_gives_none() -> None:
    for row in compare([BF16, NF4], Precision.FP32):
        _assert_no_numbers(row)
        assert row.is_baseline is False


def test_failed_baseline_gives_none() -> None:
    failed_base = _outcome("m", Precision.FP32, state="Failed", f1=0.5, peak=GIB, seconds=1.0)
    for row in compare([failed_base, BF16, NF4], Precision.FP32):
        _assert_no_numbers(row)


def test_each_model_compares_with_its_own_baseline() -> None:
    other_base = _outcome("n", Precision.FP32, f1=0.8, peak=4 * GIB, weights=2 * GIB, seconds=4.0)
    other_nf4 = _outcome("n", Precision.NF4, f1=0.7, peak=GIB, weights=GIB // 2, seconds=2.0)
    lonely = _outcome("k", Precision.NF4, f1=0.3, peak=GIB, seconds=1.0)
    rows = _by_id(compare([FP32, NF4, other_base, other_nf4, lonely], Precision.FP32))

    assert rows["m-nf4"].memory_saving_pct == pytest.approx(70.0)
    assert rows["n-nf4"].memory_saving_pct == pytest.approx(75.0)
    assert rows["n-nf4"].weights_saving_pct == pytest.approx(75.0)
    assert rows["n-nf4"].f1_delta_pp == pytest.approx(-10.0)
    assert rows["n-nf4"].time_ratio == pytest.approx(0.5)
    _assert_no_numbers(rows["k-nf4"])


def test_a_native_checkpoint_compares_with_its_baseline_model() -> None:
    gptq = dataclasses.replace(
        _outcome("m-gptq", Precision.NATIVE, f1=0.45, peak=2 * GIB, weights=GIB, seconds=30.0),
        baseline_model="m",
    )
    rows = _by_id(compare([FP32, BF16, gptq], Precision.FP32))

    row = rows["m-gptq-native"]
    assert row.is_baseline is False
    assert row.baseline_run_id == "m-fp32"
    assert row.memory_saving_pct == pytest.approx(80.0)
    assert row.f1_delta_pp == pytest.approx(-5.0)
    assert row.time_ratio == pytest.approx(1.5)
    assert rows["m-bf16"].baseline_run_id == "m-fp32"


def test_a_baseline_model_entry_at_the_baseline_precision_is_not_a_baseline() -> None:
    """An entry compared with another model is never that model's baseline, even at fp32."""
    finetune = dataclasses.replace(
        _outcome("m-tuned", Precision.FP32, f1=0.6, peak=10 * GIB, seconds=20.0),
        baseline_model="m",
    )
    rows = _by_id(compare([finetune, FP32], Precision.FP32))

    assert rows["m-tuned-fp32"].is_baseline is False
    assert rows["m-tuned-fp32"].f1_delta_pp == pytest.approx(10.0)
    assert rows["m-fp32"].is_baseline is True


def test_missing_measurements_give_none_for_that_number_only() -> None:
    partial = _outcome("m", Precision.INT8, f1=0.45, peak=None, weights=2 * GIB, seconds=None)
    row = _by_id(compare([FP32, partial], Precision.FP32))["m-int8"]

    assert row.memory_saving_pct is None
    assert row.time_ratio is None
    assert row.weights_saving_pct == pytest.approx(75.0)
    assert row.f1_delta_pp == pytest.approx(-5.0)


def test_zero_baseline_measurements_give_none() -> None:
    zero_base = _outcome("m", Precision.FP32, f1=0.5, peak=0, weights=0, seconds=0.0)
    row = _by_id(compare([zero_base, BF16], Precision.FP32))["m-bf16"]

    assert row.memory_saving_pct is None
    assert row.weights_saving_pct is None
    assert row.time_ratio is None
    assert row.f1_delta_pp == pytest.approx(2.0)


def test_best_run_has_the_highest_f1() -> None:
    assert best_run([FP32, BF16, NF4]) == BF16


def test_best_run_breaks_ties_by_lower_memory() -> None:
    big = _outcome("m", Precision.FP32, f1=0.6, peak=10 * GIB)
    small = _outcome("m", Precision.NF4, f1=0.6, peak=2 * GIB)
    middle = _outcome("m", Precision.INT8, f1=0.6, peak=5 * GIB)

    assert best_run([big, small, middle]) == small
    assert best_run([small, middle, big]) == small


def test_best_run_ignores_failed_runs_and_runs_without_f1() -> None:
    failed = _outcome("m", Precision.INT8, state="Failed", f1=0.99, peak=GIB)
    no_f1 = _outcome("m", Precision.FP16, f1=None, peak=GIB)

    assert best_run([FP32, failed, no_f1]) == FP32


def test_best_run_of_nothing_is_none() -> None:
    assert best_run([]) is None
    assert best_run([_outcome("m", Precision.FP32, state="Failed", f1=0.5)]) is None


def test_a_peak_above_the_baselines_names_the_allocators_measured_share() -> None:
    held = dataclasses.replace(
        _outcome("m", Precision.INT8, f1=0.5, peak=11 * GIB, weights=2 * GIB),
        allocator_held_bytes=3 * GIB,
    )
    rows = _by_id(compare([FP32, held, BF16], Precision.FP32))
    assert rows["m-int8"].peak_excess_bytes == 1 * GIB
    note = peak_cause_note(rows["m-int8"])
    assert note is not None
    assert "1024 MiB above the baseline's" in note
    assert "3072 MiB of freed memory" in note
    # Below the baseline, or with nothing held: nothing to explain.
    assert peak_cause_note(rows["m-bf16"]) is None
    assert peak_cause_note(rows["m-fp32"]) is None


# --- like for like: one rule for engines and devices ---------------------------------------------

GPU = Terms("transformers", "cuda")


def _on(outcome: RunOutcome, terms: Terms, dollars: float) -> RunOutcome:
    return dataclasses.replace(outcome, terms=terms, dollars=dollars)


def test_a_run_on_another_device_has_its_memory_time_and_dollars_marked() -> None:
    base = _on(FP32, GPU, 1.0)
    llama_cpp = _on(NF4, Terms("llama.cpp", "cpu"), 0.5)  # a GGUF file at native, on the CPU
    vllm = _on(BF16, Terms("vllm kv 1073741824", "cuda"), 0.4)
    int8 = _on(_outcome("m", Precision.INT8, f1=0.5, peak=5 * GIB, seconds=30.0), GPU, 1.5)

    rows = _by_id(compare([base, llama_cpp, vllm, int8], Precision.FP32))

    cpu = rows["m-nf4"]
    assert cpu.unlike == Unlike.DEVICE
    assert not cpu.memory_comparable and not cpu.time_comparable
    # The figures are kept (a reader may want them), marked where they are shown.
    assert cpu.time_ratio == pytest.approx(2.5) and cpu.dollar_ratio == pytest.approx(0.5)
    # Across engines on one device, only memory is not like for like.
    assert rows["m-bf16"].unlike == Unlike.ENGINE
    assert not rows["m-bf16"].memory_comparable and rows["m-bf16"].time_comparable
    assert rows["m-int8"].unlike is None and rows["m-int8"].memory_comparable


def test_results_that_do_not_say_count_as_the_same() -> None:
    assert unlike(Terms("transformers", ""), GPU) is None  # from before the device was recorded
    assert unlike(Terms(), Terms("llama.cpp", "cpu")) is None
    assert unlike(Terms("", "cpu"), GPU) == Unlike.DEVICE
    assert unlike(Terms("llama.cpp", "cpu"), Terms("transformers", "cpu")) == Unlike.ENGINE


def test_like_groups_keep_each_kind_apart() -> None:
    terms = {
        "gpu-fp32": GPU,
        "cpu-native": Terms("llama.cpp", "cpu"),
        "old": Terms(),  # says nothing: with the first group it fits
        "gpu-vllm": Terms("vllm kv 1", "cuda"),
        "cpu-bf16": Terms("transformers", "cpu"),
    }

    assert like_groups(terms) == [
        ["gpu-fp32", "old"], ["cpu-native"], ["gpu-vllm"], ["cpu-bf16"],
    ]  # fmt: skip
    # Time and dollars compare across engines, not across devices.
    assert like_groups(terms, time=True) == [
        ["gpu-fp32", "old", "gpu-vllm"], ["cpu-native", "cpu-bf16"],
    ]  # fmt: skip
