"""A few samples of each model side by side across its precisions (the report's text excerpt)."""

from collections.abc import Sequence

from quanteval.api.records import SampleKey, SampleRecord
from quanteval.precisions import PRECISION_ORDER
from quanteval.report.data import RunRecord
from quanteval.report.schema import SampleCell, SampleRow

DEFAULT_SAMPLES = 5


def pick_samples(keys: Sequence[SampleKey], count: int) -> list[SampleKey]:
    """Up to `count` samples spread over emotions and prompts: the i-th pick comes from the
    (i mod E)-th emotion, at position i of what is left of that emotion (deterministic)."""
    emotions = list(dict.fromkeys(emotion for _, emotion, _ in keys))
    remaining = {e: sorted({k for k in keys if k[1] == e}) for e in emotions}
    picked: list[SampleKey] = []
    i = 0
    while len(picked) < count and any(remaining.values()):
        group = remaining[emotions[i % len(emotions)]]
        if group:
            picked.append(group.pop(i % len(group)))
        i += 1
    return picked


def _cell(record: RunRecord, generation: SampleRecord | None) -> SampleCell:
    if generation is None:
        return SampleCell(record.run_id, record.precision, None)
    return SampleCell(
        record.run_id,
        record.precision,
        generation.text,
        generation.predicted or None,
        generation.intensity,
    )


def sample_rows(
    model: str, records: Sequence[RunRecord], count: int = DEFAULT_SAMPLES
) -> list[SampleRow]:
    """`count` samples of `model`, one cell per run that generated anything (highest precision
    first); the samples come from the baseline-most run's generations."""
    runs = sorted(
        (r for r in records if r.model == model and r.generations),
        key=lambda r: PRECISION_ORDER.index(r.precision),
    )
    if not runs:
        return []
    by_run = [{g.sample_key: g for g in r.generations} for r in runs]
    first = runs[0].generations
    rows = []
    for key in pick_samples([g.sample_key for g in first], count):
        generation = by_run[0][key]
        rows.append(
            SampleRow(
                model=model,
                key=generation.key,
                emotion=generation.emotion,
                prompt=generation.prompt,
                cells=tuple(_cell(r, g.get(key)) for r, g in zip(runs, by_run, strict=True)),
            )
        )
    return rows
