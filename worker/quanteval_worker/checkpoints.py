"""A run's finished generation batches under `partial/`, written as each one finishes.

A later attempt of the same run (a retried or rescheduled pod, `quanteval run --local` again after
Ctrl-C or a crash) loads them and goes on after the last one with the recorded plan (the order the
batches take the samples in, and the batch size in force), so the remaining batches have the
composition, and every sample the seed, of an uninterrupted run. A plan of another content hash is
never resumed from: its files are removed. The files go once `result.json` is written.
"""

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from quanteval.api.result import Attempt
from quanteval.prompts import Sample
from quanteval.storage import Storage
from quanteval_worker.events import log
from quanteval_worker.generation import BatchTiming, Generation, ResumeFrom

PARTIAL_DIR: Final = "partial"
PLAN_FILE: Final = f"{PARTIAL_DIR}/generation-plan.json"


def batch_file(index: int) -> str:
    return f"{PARTIAL_DIR}/generation-{index:05d}.json"


class GenerationPlan(BaseModel):
    """What a later attempt follows: written after each finished batch, that batch's file
    first (a batch counts once its file is there)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    content_hash: str
    order: list[str]  # sample keys, in the order the batches take them
    size: int  # the batch size in force for the next batch (halved on out-of-memory)
    batches: list[list[str]]  # each finished batch's sample keys, in order
    attempts: list[Attempt] = []  # every attempt so far, the latest as of its last batch


def _to_json(generation: Generation) -> dict[str, Any]:
    return dataclasses.asdict(generation)


def _from_json(data: dict[str, Any]) -> Generation:
    fields = dict(data)
    sample = Sample(**fields.pop("sample"))
    batch = BatchTiming(**fields.pop("batch"))
    return Generation(sample=sample, batch=batch, **fields)


# This attempt as of now, from the batches it finished and their own seconds.
AttemptSoFar = Callable[[list[int], float], Attempt]


class Checkpoints:
    """A run's `partial/` directory, for one content hash; `attempt` says what this attempt
    has done so far, recorded with each batch."""

    def __init__(self, storage: Storage, content_hash: str, attempt: AttemptSoFar) -> None:
        self.storage = storage
        self.content_hash = content_hash
        self.attempt = attempt
        self.batches: list[list[str]] = []
        self.earlier: list[Attempt] = []  # the attempts before this one
        self.mine: list[int] = []  # the batches this attempt finished
        self.seconds = 0.0  # their own wall time

    def resume(self, samples: Sequence[Sample]) -> ResumeFrom | None:
        """The earlier attempts' finished batches, where their plan is this run's and holds
        these samples; None (and their files removed) otherwise."""
        text = self.storage.read_text(PLAN_FILE)
        if text is None:
            return None
        try:
            plan = GenerationPlan.model_validate_json(text)
        except ValidationError:
            plan = None
        keys = {s.key for s in samples}
        if plan is None or plan.content_hash != self.content_hash or set(plan.order) != keys:
            log("partial results of another configuration: removed, not resumed from")
            self.clear(len(plan.batches) if plan else 0)
            return None
        generations: dict[str, Generation] = {}
        for index, batch in enumerate(plan.batches):
            data = self.storage.read_text(batch_file(index))
            loaded = [_from_json(item) for item in json.loads(data or "[]")]
            if [g.sample.key for g in loaded] != batch:
                plan = plan.model_copy(update={"batches": plan.batches[:index]})
                break  # a batch file that is not what the plan says: resume before it
            generations.update((g.sample.key, g) for g in loaded)
        self.batches = [list(b) for b in plan.batches]
        self.earlier = list(plan.attempts)
        if not self.batches:
            return None
        return ResumeFrom(plan.order, plan.size, len(self.batches), generations)

    def save(
        self, index: int, batch: Sequence[Generation], order: Sequence[str], size: int
    ) -> None:
        """A finished batch, then the plan that counts it (generation.BatchDone)."""
        self.storage.write_text(batch_file(index), json.dumps([_to_json(g) for g in batch]))
        self.batches.append([g.sample.key for g in batch])
        self.mine.append(index)
        self.seconds += batch[0].batch.prefill_seconds + batch[0].batch.decode_seconds
        plan = GenerationPlan(
            content_hash=self.content_hash,
            order=list(order),
            size=size,
            batches=self.batches,
            attempts=[*self.earlier, self.attempt(self.mine, self.seconds)],
        )
        self.storage.write_text(PLAN_FILE, plan.model_dump_json(by_alias=True))

    @property
    def number(self) -> int:
        """This attempt's number: 1 for the first."""
        return len(self.earlier) + 1

    def clear(self, batches: int | None = None) -> None:
        """The partial files removed: the plan first, so no attempt resumes from half of them."""
        count = len(self.batches) if batches is None else batches
        self.storage.delete(PLAN_FILE)
        for index in range(count):
            self.storage.delete(batch_file(index))


def remove_partial(storage: Storage) -> None:
    """A finished run's partial files removed (its result.json written), the plan first."""
    text = storage.read_text(PLAN_FILE)
    if text is None:
        return
    try:
        batches = len(GenerationPlan.model_validate_json(text).batches)
    except ValidationError:
        batches = 0
    storage.delete(PLAN_FILE)
    for index in range(batches):
        storage.delete(batch_file(index))
