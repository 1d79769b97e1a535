"""What the report reads: one record per run directory, with its generations, as plain data."""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from quanteval.fidelity import TokenDistributions
from quanteval.precisions import Precision
from quanteval.results import RunResult

SUCCEEDED = "Succeeded"
FAILED = "Failed"  # the run started (its directory has files) but wrote no valid result.json
MISSING = "Missing"  # nothing at all: the run never ran or never wrote anything

SampleKey = tuple[int, str, int]  # prompt id, intended emotion, sample index


@dataclass(frozen=True)
class Generation:
    """One line of `generations.jsonl`: what the report needs of it."""

    key: str
    prompt_id: int
    emotion: str
    sample_index: int
    prompt: str
    text: str
    predicted: str
    probabilities: dict[str, float] = field(default_factory=dict)
    latency_ms: float | None = None  # its batch's start to its own end (None in older files)

    @property
    def sample_key(self) -> SampleKey:
        """What identifies a sample across precisions (the same seed generated it)."""
        return (self.prompt_id, self.emotion, self.sample_index)

    @property
    def intensity(self) -> float:
        """The classifier's probability of the intended emotion, on the 0-100 scale."""
        return 100.0 * self.probabilities.get(self.emotion, 0.0)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    model: str
    precision: Precision
    state: str  # SUCCEEDED, FAILED or MISSING
    reason: str = ""
    result: RunResult | None = None
    generations: tuple[Generation, ...] = ()
    fidelity: TokenDistributions | None = None  # its pass over the reference corpus


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
    model, _, suffix = name.rpartition("-")
    if not model:
        return None
    try:
        return model, Precision(suffix)
    except ValueError:
        return None


def _generation(record: object) -> Generation | None:
    if not isinstance(record, dict):
        return None
    try:
        probabilities = record.get("probabilities") or {}
        prompt_id, emotion, sample_index = (
            int(record["promptId"]),
            str(record["emotion"]),
            int(record.get("sampleIndex", 0)),
        )
        return Generation(
            key=str(record.get("key") or f"p{prompt_id}-{emotion}-s{sample_index}"),
            prompt_id=prompt_id,
            emotion=emotion,
            sample_index=sample_index,
            prompt=str(record.get("prompt", "")),
            text=str(record.get("text", "")),
            predicted=str(record.get("predicted", "")),
            probabilities={str(k): float(v) for k, v in dict(probabilities).items()},
            latency_ms=float(record["latencyMs"]) if "latencyMs" in record else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def parse_generations(lines: Iterable[str]) -> tuple[list[Generation], int]:
    """The generations of a `generations.jsonl`, and how many non-blank lines were unreadable."""
    generations: list[Generation] = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            generation = _generation(json.loads(line))
        except json.JSONDecodeError:
            generation = None
        if generation is None:
            bad += 1
        else:
            generations.append(generation)
    return generations, bad
