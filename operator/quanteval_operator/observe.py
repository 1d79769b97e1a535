"""Observations of Jobs and pods, from their bodies: what status aggregation needs, nothing more."""

from collections.abc import Mapping
from typing import Any

from quanteval_operator.jobs import ANNOTATION_CONTENT_HASH
from quanteval_operator.status import JobObservation, PodObservation, PodPhase


def _condition(conditions: list[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next(
        (c for c in conditions if c.get("type") == type_ and c.get("status") == "True"), None
    )


def observe_job(
    name: str,
    annotations: Mapping[str, str],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    uid: str = "",
    created: str = "",
) -> JobObservation:
    conditions = list(status.get("conditions") or [])
    complete = _condition(conditions, "Complete")
    failed = _condition(conditions, "Failed")
    return JobObservation(
        name=name,
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        complete=complete is not None,
        failed_condition=failed is not None,
        condition_reason=str((failed or {}).get("reason", "")),
        condition_message=str((failed or {}).get("message", "")),
        suspended=bool(spec.get("suspend")),
        content_hash=annotations.get(ANNOTATION_CONTENT_HASH, ""),
        uid=uid,
        created=created,
    )


def observe_pod(name: str, meta: Mapping[str, Any], status: Mapping[str, Any]) -> PodObservation:
    containers = list(status.get("containerStatuses") or [])
    state: Mapping[str, Any] = containers[0].get("state", {}) if containers else {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    scheduled: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {}
    )
    unschedulable = (
        str(scheduled.get("message", ""))
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"
        else ""
    )
    exit_code = terminated.get("exitCode")
    return PodObservation(
        name=name,
        created=str(meta.get("creationTimestamp", "")),
        phase=str(status.get("phase", PodPhase.PENDING)),
        waiting_reason=str(waiting.get("reason", "")),
        waiting_message=str(waiting.get("message", "")),
        unschedulable_message=unschedulable,
        exit_code=int(exit_code) if exit_code is not None else None,
        terminated_reason=str(terminated.get("reason", "")),
        termination_message=str(terminated.get("message", "")),
    )
