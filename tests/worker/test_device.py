"""The device a run computes on, apart from the GPUs its process holds: llama.cpp on a GPU node."""

import time

from quanteval_worker.device import DeviceInfo
from quanteval_worker.trackers import PhaseTracker, cpu_seconds_used

H100 = DeviceInfo("cuda", gpu_names=("NVIDIA H100 80GB HBM3",), capability=(9, 0))


def test_a_run_on_the_cpu_of_a_gpu_node_still_pays_for_the_gpu_it_holds() -> None:
    llama_cpp = H100.on_cpu()
    tracker = PhaseTracker(llama_cpp, time.perf_counter() - 10.0, cpu_seconds_used())

    assert llama_cpp.kind == "cpu" and llama_cpp.describe() == "the CPU"
    assert tracker.gpu_seconds() >= 10.0  # the held GPU, priced as GPU-seconds
    assert llama_cpp.unused_gpus() == [
        "computed on the CPU (llama.cpp) while holding 1 GPU (NVIDIA H100 80GB HBM3), unused: "
        "they are counted in gpuSeconds and dollars; with resources.gpus: auto its Job asks for "
        "none"
    ]


def test_a_run_that_holds_no_gpu_or_computes_on_it_has_nothing_to_say() -> None:
    assert DeviceInfo("cpu").on_cpu().unused_gpus() == []
    assert H100.unused_gpus() == []
    assert (
        PhaseTracker(DeviceInfo("cpu"), time.perf_counter(), cpu_seconds_used()).gpu_seconds() == 0
    )
