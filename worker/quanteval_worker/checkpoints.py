"""A run's finished batches under `partial/`, written as each one finishes: the generation's,
and the intensity task's answers and expected ratings.

A later attempt of the same run (a retried or rescheduled pod, `quanteval run --local` again after
Ctrl-C or a crash) loads them and goes on after the last one with the recorded plan (the order the
batches take the samples in, and the batch size in force), so the remaining batches have the
composition, and every sample the seed, of an uninterrupted run. A plan of another content hash is
never resumed from: its files are removed. The files go once `result.json` is written.
"""

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from quanteval.api.result import Attempt
from quanteval.expected_rating import ExpectedRating
from quanteval.fidelity import TokenDistributions
from quanteval.prompts import Sample
from quanteval.storage import Storage
from quanteval_worker.events import log
from quanteval_worker.generation import BatchTiming, Generation, ResumeFrom

PARTIAL_DIR: Final = "partial"
PLAN_SUFFIX: Final = "-plan.json"
GENERATION: Final = "generation"
FIDELITY: Final = "fidelity"
EXPECTED_FILE: Final = f"{PARTIAL_DIR}/expected.json"


def plan_file(task: str) -> str:
    return f"{PARTIAL_DIR}/{task}{PLAN_SUFFIX}"


def batch_file(task: str, index: int, suffix: str = ".json") -> str:
    return f"{PARTIAL_DIR}/{task}-{index:05d}{suffix}"


class BatchPlan(BaseModel):
    """What a later attempt follows: written after each finished batch, that batch's file
    first (a batch counts once its file is there)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    content_hash: str
    order: list[str]  # sample keys, in the order the batches take them
    size: int  # the batch size in force for the next batch (halved on out-of-memory)
    batches: list[list[str]]  # each finished batch's sample keys, in order
    # The generation's only: every attempt so far, the latest as of its last batch.
    attempts: list[Attempt] = []


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
    """One task's batches in a run's `partial/` directory, for one content hash; `attempt`
    (the generation's) says what this attempt has done so far, recorded with each batch."""

    def __init__(
        self,
        storage: Storage,
        content_hash: str,
        task: str = GENERATION,
        attempt: AttemptSoFar | None = None,
    ) -> None:
        self.storage = storage
        self.content_hash = content_hash
        self.task = task
        self.attempt = attempt
        self.batches: list[list[str]] = []
        self.earlier: list[Attempt] = []  # the attempts before this one
        self.mine: list[int] = []  # the batches this attempt finished
        self.seconds = 0.0  # their own wall time
        self.planned_size: int | None = None  # the batch size the resumed plan had
        self.rebatched: list[str] = []  # samples this attempt put in smaller batches than that

    def resume(self, samples: Sequence[Sample]) -> ResumeFrom | None:
        """The earlier attempts' finished batches, where their plan is this run's and holds
        these samples; None (and their files removed) otherwise."""
        text = self.storage.read_text(plan_file(self.task))
        if text is None:
            return None
        try:
            plan = BatchPlan.model_validate_json(text)
        except ValidationError:
            plan = None
        keys = {s.key for s in samples}
        if plan is None or plan.content_hash != self.content_hash or set(plan.order) != keys:
            log(f"partial {self.task} of another configuration: removed, not resumed from")
            remove_partial(self.storage, self.task)
            return None
        generations: dict[str, Generation] = {}
        for index, batch in enumerate(plan.batches):
            data = self.storage.read_text(batch_file(self.task, index))
            loaded = [_from_json(item) for item in json.loads(data or "[]")]
            if [g.sample.key for g in loaded] != batch:
                plan = plan.model_copy(update={"batches": plan.batches[:index]})
                break  # a batch file that is not what the plan says: resume before it
            generations.update((g.sample.key, g) for g in loaded)
        self.batches = [list(b) for b in plan.batches]
        self.earlier = list(plan.attempts)
        if not self.batches:
            return None
        self.planned_size = plan.size
        return ResumeFrom(plan.order, plan.size, len(self.batches), generations)

    def save(
        self, index: int, batch: Sequence[Generation], order: Sequence[str], size: int
    ) -> None:
        """A finished batch, then the plan that counts it (generation.BatchDone)."""
        self.storage.write_text(
            batch_file(self.task, index), json.dumps([_to_json(g) for g in batch])
        )
        self.batches.append([g.sample.key for g in batch])
        self.mine.append(index)
        self.seconds += batch[0].batch.prefill_seconds + batch[0].batch.decode_seconds
        if self.planned_size is not None and size < self.planned_size:
            self.rebatched.extend(g.sample.key for g in batch)
        attempts = [] if self.attempt is None else [self.attempt(self.mine, self.seconds)]
        plan = BatchPlan(
            content_hash=self.content_hash,
            order=list(order),
            size=size,
            batches=self.batches,
            attempts=[*self.earlier, *attempts],
        )
        self.storage.write_text(plan_file(self.task), plan.model_dump_json(by_alias=True))

    @property
    def number(self) -> int:
        """This attempt's number: 1 for the first."""
        return len(self.earlier) + 1


def remove_partial(storage: Storage, task: str | None = None) -> None:
    """Partial files removed, the plans first (no attempt resumes from half of them): a
    finished run's (its result.json written), or one task's."""
    names = storage.list_children(PARTIAL_DIR)
    if task is not None:
        names = [n for n in names if n.startswith(f"{task}-")]
    for name in sorted(names, key=lambda n: not n.endswith(PLAN_SUFFIX)):
        storage.delete(f"{PARTIAL_DIR}/{name}")


@dataclass
class ExpectedCheckpoints:
    """The intensity task's expected ratings so far (the walk takes a text at a time): a later
    attempt of the same content hash goes on after the last one saved."""

    storage: Storage
    content_hash: str

    def resume(self, texts: int) -> list[ExpectedRating]:
        text = self.storage.read_text(EXPECTED_FILE)
        if text is None:
            return []
        saved = json.loads(text)
        if saved.get("contentHash") != self.content_hash or saved.get("texts") != texts:
            return []
        return [ExpectedRating(*row) for row in saved["ratings"]]

    def save(self, ratings: Sequence[ExpectedRating], texts: int) -> None:
        rows = [[r.value, r.spread, r.non_numeric_mass] for r in ratings]
        document = {"contentHash": self.content_hash, "texts": texts, "ratings": rows}
        self.storage.write_text(EXPECTED_FILE, json.dumps(document))


@dataclass
class FidelityCheckpoints:
    """The fidelity pass's scored batches (partial/fidelity-*.npz, each cut as the stored file
    keeps it): a later attempt of the same content hash goes on after the last one."""

    storage: Storage
    content_hash: str

    def resume(self) -> list[TokenDistributions]:
        text = self.storage.read_text(plan_file(FIDELITY))
        plan = json.loads(text) if text is not None else {}
        if plan.get("contentHash") != self.content_hash:
            return []
        batches = []
        for index in range(int(plan.get("batches", 0))):
            data = self.storage.read_bytes(batch_file(FIDELITY, index, ".npz"))
            if data is None:
                break
            try:
                batches.append(TokenDistributions.from_bytes(data))
            except KeyError:  # an earlier worker's layout: scored again
                break
        return batches

    def save(self, index: int, batch: TokenDistributions) -> None:
        """The batch, then the plan that counts it."""
        self.storage.write_bytes(batch_file(FIDELITY, index, ".npz"), batch.to_bytes())
        plan = {"contentHash": self.content_hash, "batches": index + 1}
        self.storage.write_text(plan_file(FIDELITY), json.dumps(plan))
