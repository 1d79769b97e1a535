"""One reconcile pass as a pure function: from what the operator observes of a QuantEval to a plan.

`plan_pass(observations, settings)` reads the QuantEval, its Jobs and pods (as the indexes hold
them), the status written last and the time, and returns the Jobs to create, the status to write
and the Events to post once that write has succeeded. It does no I/O, so every decision of a pass
(what runs next, what a refused create or a podless Job becomes, when the report starts, what a
finished evaluation keeps) is unit-tested without a server. The handlers carry a plan out: create
its Jobs, plan again with what the API server answered (`Observations.created`, `.refused`), then
write the status and post the Events.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from quanteval.api.errors import InvalidSpecError
from quanteval.api.spec import QuantEval, parse_manifest
from quanteval.api.states import EventReason
from quanteval.matrix import Run, expand, legacy_hash
from quanteval_operator.events import StoryEvent, story_events
from quanteval_operator.jobs import (
    REPORT,
    SpecProblem,
    check_run_spec_size,
    effective_manifest,
    gpus_for,
    render_job,
    render_report_job,
    report_uri,
    run_device,
)
from quanteval_operator.settings import Settings
from quanteval_operator.status import (
    JobObservation,
    PodObservation,
    ReportObservation,
    aggregate,
    failure_reasons,
    finished_status,
    invalid_status,
    is_finished,
    podless_jobs,
    recorded_runs,
    run_entries,
)


@dataclass(frozen=True)
class Observations:
    """What one pass knows of a QuantEval."""

    body: Mapping[str, Any]  # the QuantEval as indexed
    jobs: list[tuple[str, JobObservation]]  # (run id or REPORT, Job): its own Jobs only
    pods: list[tuple[str, PodObservation]]  # (run id or REPORT, pod): pods of those Jobs only
    previous: Mapping[str, Any]  # the status written last
    now: datetime
    # What the API server answered this pass: the Jobs it created (not yet indexed), and by run
    # why it refused one (a create refused, a Job controller's FailedCreate for a podless Job).
    created: Mapping[str, JobObservation] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobToCreate:
    run_id: str  # or REPORT
    job: dict[str, Any]  # the manifest
    kind: str  # "run" or "report": the jobs-created metric's label
    reason: EventReason  # the Event told once the API server created it
    message: str

    @property
    def name(self) -> str:
        return str(self.job["metadata"]["name"])


@dataclass(frozen=True)
class Plan:
    create: list[JobToCreate]
    status: dict[str, Any] | None  # to write; None: what the resource holds is right
    # The status as the resource holds it once written (the last written, with this over it).
    merged: dict[str, Any]
    events: list[StoryEvent]  # to post after the status write succeeds
    # Jobs by run that should have a pod by now and have none: what their FailedCreate Events
    # say belongs in `Observations.refused`.
    podless: dict[str, JobObservation] = field(default_factory=dict)
    # Seconds until a Job still waiting for its pod becomes podless: no event comes then, so the
    # operator asks for a pass itself (None: no Job is waiting).
    recheck_seconds: float | None = None


def _manifest(body: Mapping[str, Any], settings: Settings) -> QuantEval:
    meta = body.get("metadata") or {}
    document = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {key: meta.get(key) for key in ("name", "namespace", "uid", "generation")},
        "spec": dict(body.get("spec") or {}),
    }
    manifest = effective_manifest(parse_manifest(document, "spec"), settings)
    if not is_finished(body.get("status") or {}):  # a finished one starts no pod again
        check_run_spec_size(manifest)
    return manifest


def _now(observations: Observations) -> str:
    return observations.now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _differs(previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    return any(previous.get(key) != value for key, value in status.items())


def _writing(previous: Mapping[str, Any], status: dict[str, Any], events: list[StoryEvent]) -> Plan:
    """Write `status` (and post `events`) only if it changes what the resource holds."""
    if not _differs(previous, status):
        return Plan(create=[], status=None, merged=dict(previous), events=[])
    return Plan(create=[], status=status, merged=dict(previous) | status, events=events)


def _invalid(observations: Observations, generation: int, message: str) -> Plan:
    """Valid=False with `message` (and its Warning, once); no Job."""
    previous = dict(observations.previous)
    status = invalid_status(previous, generation, _now(observations), message)
    warning = StoryEvent(EventReason.INVALID_SPEC, message, warning=True)
    return _writing(previous, status, [warning])


def _changed_after_start(observations: Observations, manifest: QuantEval) -> str:
    """Why the runs started can no longer be the spec's ("" when they can)."""
    spec = manifest.spec
    seen = observations.previous.get("emotions")
    if seen and list(seen) != list(spec.emotion_names):
        return (
            f"spec.emotions changed after the operator first saw this QuantEval (then: "
            f"{', '.join(seen)}; now: {', '.join(spec.emotion_names)}): revert it, or create a "
            "new QuantEval"
        )
    hashes = {run_id: job.content_hash for run_id, job in observations.jobs}
    changed = [
        r.id
        for r in expand(spec)  # a Job started before schema 3 (an operator upgrade) is the run
        if hashes.get(r.id, "") not in ("", r.content_hash, legacy_hash(spec, r))
    ]
    if changed:  # CEL keeps the spec immutable but cannot read the untyped spec.emotions
        return (
            "spec.emotions (or another field that decides results) changed after creation; "
            f"runs {', '.join(changed)} were started with the old value: revert it, or create "
            "a new QuantEval"
        )
    return ""


def _runs_to_start(
    runs: list[Run],
    job_by_run: Mapping[str, JobObservation],
    observations: Observations,
    manifest: QuantEval,
    settings: Settings,
) -> list[JobToCreate]:
    """The Jobs of the next runs, as many as parallelism leaves room for: never a run that has a
    Job, that finished before (its Job since removed), or whose Job was refused this pass."""
    spec = manifest.spec
    active = sum(1 for job in job_by_run.values() if not job.finished)
    room = 0 if spec.suspend else max(0, spec.parallelism - active)
    done = recorded_runs(observations.previous)
    due = [r for r in runs if r.id not in job_by_run and r.id not in done
           and r.id not in observations.refused]  # fmt: skip
    creates = []
    for run in due[:room]:
        job = render_job(manifest, run, settings)
        message = f"run {run.id}: Job {job['metadata']['name']}"
        creates.append(JobToCreate(run.id, job, "run", EventReason.RUN_STARTED, message))
    return creates


def plan_pass(observations: Observations, settings: Settings) -> Plan:
    body = observations.body
    meta = body.get("metadata") or {}
    generation = int(meta.get("generation") or 0)
    previous = dict(observations.previous)
    try:
        manifest = _manifest(body, settings)
    except (InvalidSpecError, SpecProblem) as error:
        message = error.message if isinstance(error, InvalidSpecError) else str(error)
        return _invalid(observations, generation, message.removeprefix("spec: invalid QuantEval\n"))
    finished = finished_status(previous, generation)
    if finished is not None:  # its Jobs may be gone by now: none is created again
        return _writing(previous, finished, [])
    problem = _changed_after_start(observations, manifest)
    if problem:
        return _invalid(observations, generation, problem)
    spec = manifest.spec
    runs = expand(spec)
    job_by_run = dict(observations.jobs) | dict(observations.created)
    creates = _runs_to_start(runs, job_by_run, observations, manifest, settings)
    pods_by_run: dict[str, list[PodObservation]] = {}
    for run_id, pod in observations.pods:
        pods_by_run.setdefault(run_id, []).append(pod)
    report_job = job_by_run.pop(REPORT, None)
    done = recorded_runs(previous)
    ended = all(r.id in done or (r.id in job_by_run and job_by_run[r.id].finished) for r in runs)
    if report_job is None and ended:
        entries = run_entries(runs, job_by_run, pods_by_run, previous, spec.suspend)
        job = render_report_job(manifest, settings, failure_reasons(entries))
        message = f"Job {job['metadata']['name']}"
        creates.append(JobToCreate(REPORT, job, "report", EventReason.REPORT_STARTED, message))
    report = ReportObservation(report_job, pods_by_run.pop(REPORT, []), report_uri(manifest))
    unsized = [r.id for r in runs if gpus_for(manifest, r, settings) is None]
    devices = {r.id: run_device(manifest, r, settings) for r in runs}
    status = aggregate(
        runs, job_by_run, pods_by_run, previous, generation, spec.suspend, _now(observations),
        spec.baseline_precision, report, unsized, dict(observations.refused), spec.emotion_names,
        devices,
    )  # fmt: skip
    podless, recheck = podless_jobs(
        job_by_run, pods_by_run, observations.now, settings.podless_seconds
    )
    plan = _writing(previous, status, story_events(previous, status))
    return replace(plan, create=creates, podless=podless, recheck_seconds=recheck)
