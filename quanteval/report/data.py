"""What the report reads: one record per run directory, with its generations, as plain data."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from quanteval.api.records import RatingRecord, SampleRecord
from quanteval.api.result import RunResult
from quanteval.api.states import RunState
from quanteval.engines import Engine, run_id
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
    engine: Engine = Engine.AUTO
    replicate: int = 1  # spec.replicates: after the first, a repeat (quanteval.matrix.Run)

    @property
    def repeats(self) -> str:
        """The id of the run this one repeats (its own id for the first replicate)."""
        return (
            run_id(self.model, self.precision, self.engine) if self.replicate > 1 else self.run_id
        )

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
    engine: Engine = Engine.AUTO
    replicate: int = 1

    @classmethod
    def from_arg(cls, value: str) -> "ExpectedRun":
        """From `--expect`'s value (quanteval.matrix.expect_arg), or a bare
        `<model>-<precision>[:<reason>]` (an operator from before engines); ValueError when it
        is neither."""
        head, _, reason = value.partition(":")
        run_id, equals, parts = head.partition("=")
        if not equals:
            parsed = parse_run_id(run_id)
            if parsed is None:
                raise ValueError(
                    f"{value!r} is not <run id>=<model>/<precision>/<engine>[:reason] "
                    "or <model>-<precision>[:reason]"
                )
            return cls(run_id, parsed[0], parsed[1], reason)
        fields = parts.split("/")
        try:
            model, precision, engine, *rest = fields
            replicate = int(rest[0].removeprefix("r")) if rest else 1
            if len(rest) > 1 or replicate < 1 or (rest and not rest[0].startswith("r")):
                raise ValueError
            return cls(run_id, model, Precision(precision), reason, Engine(engine), replicate)
        except ValueError:
            raise ValueError(
                f"{value!r}: after {run_id}= give <model>/<precision>/<engine>[/r<replicate>] "
                f"(precisions: {', '.join(Precision)}; engines: {', '.join(Engine)})"
            ) from None


def parse_run_id(name: str) -> tuple[str, Precision] | None:
    """`<model>-<precision>` (an auto engine's run id) back into its parts; None if not one.
    Only for runs that left neither result.json nor runspec.json and were not expected."""
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
