"""The Events that tell an evaluation's story in `kubectl describe quanteval`.

Plain data: the status the operator wrote last and the one it writes now go in, the Events that
the change deserves come out. Job creation (RunStarted, ReportStarted) and spec problems
(InvalidSpec) are told where they happen; everything observed from Jobs and pods is told here.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quanteval.api.states import ConditionType, EventReason, Reason, RunState
from quanteval.fmt import human_bytes

# Waits that are on their way (image pull, volume mount) or asked for (spec.suspend): no Warning.
QUIET_WAITS = ("ContainerCreating", "PodInitializing", Reason.SUSPENDED.value)


@dataclass(frozen=True)
class StoryEvent:
    reason: str  # an EventReason
    message: str
    warning: bool = False


def _runs(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(r.get("id")): r for r in status.get("runs") or [] if isinstance(r, Mapping)}


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    items = status.get("conditions") or []
    return {str(c.get("type")): c for c in items if isinstance(c, Mapping)}


def _succeeded_message(run_id: str, metrics: Mapping[str, Any]) -> str:
    parts = []
    if metrics.get("f1Macro") is not None:
        parts.append(f"macro-F1 {metrics['f1Macro']:.3f}")
    if metrics.get("peakMemoryBytes") is not None:
        parts.append(f"peak memory {human_bytes(metrics['peakMemoryBytes'])}")
    if metrics.get("generationSeconds") is not None:
        parts.append(f"generation {metrics['generationSeconds']:.1f} s")
    if metrics.get("ratingParseFailureRate") is not None:
        rho = metrics.get("ratingSpearmanRho")
        parts.append(
            "intensity ratings: rho vs level "
            + (f"{rho:+.2f}" if rho is not None else "none")
            + f", parse failures {100 * metrics['ratingParseFailureRate']:.1f}%"
        )
    if metrics.get("resumedSamples"):
        parts.append(
            f"resumed after {metrics['resumedSamples']} samples an earlier attempt generated"
        )
    return f"run {run_id} succeeded" + (f": {', '.join(parts)}" if parts else "")


def run_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[StoryEvent]:
    """Per run: succeeded, failed, retried, or stuck waiting (a new reason only)."""
    before = _runs(old)
    told: list[StoryEvent] = []
    for run_id, run in _runs(new).items():
        was = before.get(run_id, {})
        state, reason = run.get("state"), str(run.get("reason") or "")
        attempts = int(run.get("attempts") or 0)
        if state == RunState.SUCCEEDED and was.get("state") != RunState.SUCCEEDED:
            told.append(
                StoryEvent(
                    EventReason.RUN_SUCCEEDED, _succeeded_message(run_id, run.get("metrics") or {})
                )
            )
        elif state == RunState.FAILED and was.get("state") != RunState.FAILED:
            told.append(StoryEvent(EventReason.RUN_FAILED, f"run {run_id}: {reason}", warning=True))
        elif state in (RunState.PENDING, RunState.RUNNING) and attempts > max(
            1, int(was.get("attempts") or 0)
        ):
            told.append(
                StoryEvent(
                    EventReason.RUN_RETRIED, f"run {run_id}: attempt {attempts}", warning=True
                )
            )
        elif (
            state == RunState.PENDING
            and reason != str(was.get("reason") or "")
            and reason
            and not reason.startswith(QUIET_WAITS)
        ):
            told.append(
                StoryEvent(EventReason.RUN_WAITING, f"run {run_id}: {reason}", warning=True)
            )
    return told


def _changed(old: Mapping[str, Any], new: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    """The condition `type_` of `new` if its status or reason moved since `old`, else {}."""
    cond = _conditions(new).get(type_, {})
    was = _conditions(old).get(type_, {})
    moved = (cond.get("status"), cond.get("reason")) != (was.get("status"), was.get("reason"))
    return cond if moved else {}


def outcome_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[StoryEvent]:
    """The report written or failed, then the evaluation's end: each told once, on its change."""
    told: list[StoryEvent] = []
    report = _changed(old, new, ConditionType.REPORT_READY)
    if report.get("status") == "True":
        told.append(
            StoryEvent(EventReason.REPORT_WRITTEN, f"report at {report.get('message', '')}")
        )
    elif report.get("status") == "False":
        told.append(
            StoryEvent(EventReason.REPORT_FAILED, str(report.get("message", "")), warning=True)
        )
    end = _changed(old, new, ConditionType.SUCCEEDED)
    message = str(end.get("message", ""))
    if end.get("status") == "True":
        best = (new.get("summary") or {}).get("bestRun")
        told.append(
            StoryEvent(EventReason.SUCCEEDED, message + (f"; best run {best}" if best else ""))
        )
    # InvalidSpec is told where the spec is read.
    elif end.get("status") == "False" and end.get("reason") != Reason.INVALID_SPEC:
        told.append(StoryEvent(EventReason.FAILED, message, warning=True))
    return told


def story_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[StoryEvent]:
    return run_events(old, new) + outcome_events(old, new)
