"""A run's replicates (spec.replicates): run-to-run spread of time, memory and dollars.

The first replicate is the run itself, compared with its baseline as any run is; the others
(`<run>-r<i>`, other seeds) only say how much a figure moves from one run to the next.
"""

from collections.abc import Callable, Mapping, Sequence

from quanteval.api.result import RunMetrics
from quanteval.api.states import RunState
from quanteval.report.data import RunRecord
from quanteval.report.schema import ReplicateFigures, Spread
from quanteval.stats import t_interval


def replicate_groups(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Each run's replicates' records by the run's id, first first (a run made once: its own
    record alone), in the records' order."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.repeats, []).append(record)
    return {run: sorted(group, key=lambda r: r.replicate) for run, group in groups.items()}


def replicate_values(
    group: Sequence[RunRecord], figure: Callable[[RunMetrics], float | int | None]
) -> list[float]:
    """A figure of each succeeded replicate that has it."""
    values = [
        figure(r.result.metrics)
        for r in group
        if r.state == RunState.SUCCEEDED and r.result is not None
    ]
    return [float(v) for v in values if v is not None]


def _spread(values: list[float]) -> Spread | None:
    if len(values) < 2:
        return None
    return Spread(sum(values) / len(values), t_interval(values), tuple(values))


def replicate_figures(groups: Mapping[str, list[RunRecord]]) -> tuple[ReplicateFigures, ...]:
    """The spread of each run made more than once (`groups`: replicate_groups), in its order."""
    return tuple(
        ReplicateFigures(
            run_id=run,
            replicates=tuple(r.run_id for r in group),
            succeeded=sum(r.state == RunState.SUCCEEDED for r in group),
            generation_seconds=_spread(replicate_values(group, lambda m: m.generation_seconds)),
            tpot_ms=_spread(replicate_values(group, lambda m: m.tpot_p50_ms)),
            peak_memory_bytes=_spread(replicate_values(group, lambda m: m.peak_memory_bytes)),
            dollars=_spread(replicate_values(group, lambda m: m.dollars)),
        )
        for run, group in groups.items()
        if len(group) > 1
    )
