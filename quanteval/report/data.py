"""What the report reads: one record per run directory, with its generations, as plain data."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from quanteval.api.records import RatingRecord, SampleRecord
from quanteval.api.result import RunResult
from quanteval.api.states import RunState
from quanteval.fidelity import TokenDistributions
from quanteval.precisions import Precision, parse_precision_suffix


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    model: str
    precision: Precision
    state: RunState  # Succeeded, Failed (no valid result.json) or Missing (nothing written)
    reason: str = ""
    result: RunResult | None = None
    generations: tuple[SampleRecord, ...] = ()
    ratings: tuple[RatingRecord, ...] = ()  # the intensity task's, where it ran
    fidelity: TokenDistributions | None = None  # its pass over the reference corpus

    @property
    def compared_model(self) -> str:
        """The model whose baseline run this one is compared with: its baselineModel, or its
        own (a run without a result says nothing else)."""
        return (self.result.baseline_model if self.result else None) or self.model


@dataclass(frozen=True)
class ExpectedRun:
    """A run the caller knows should exist (from the manifest), so that its absence shows."""

    run_id: str
    model: str
    precision: Precision
    reason: str = ""  # why it failed, when the caller knows

    @classmethod
    def from_id(cls, run_id: str, reason: str = "") -> "ExpectedRun":
        """From `<model>-<precision>`; ValueError when it is not a run id."""
        parsed = parse_run_id(run_id)
        if parsed is None:
            raise ValueError(f"{run_id!r} is not a run id (<model>-<precision>)")
        return cls(run_id, parsed[0], parsed[1], reason)


def parse_run_id(name: str) -> tuple[str, Precision] | None:
    """`<model>-<precision>` (quanteval.matrix.run_id) back into its parts; None if not a run."""
    return parse_precision_suffix(name)


Record = TypeVar("Record", SampleRecord, RatingRecord)


def parse_records(lines: Iterable[str], kind: type[Record]) -> tuple[list[Record], int]:
    """The records of a per-sample file (`generations.jsonl`, `ratings.jsonl`), and how many
    non-blank lines were unreadable."""
    records: list[Record] = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            records.append(kind.from_line(line))
        except ValidationError:
            bad += 1
    return records, bad
