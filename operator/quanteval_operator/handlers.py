"""The kopf handlers: indexes of QuantEvals, Jobs and pods, and event-driven reconciliation.

Level-based: each pass reads the QuantEval, the Jobs and pods that the indexes hold for it, creates
the Jobs that are due (deterministic names, so a restarted operator never duplicates one), and
writes the whole status (one writer owns `status.runs`). Any event of the QuantEval or of its
Jobs and pods asks for a pass; passes of one QuantEval never overlap, and a burst of events
coalesces into one more pass.

Only event and index handlers: kopf puts no finalizer on a QuantEval (daemons and timers would),
so deleting one never waits for the operator. A pass that fails is retried with backoff, and a
resync task started with the operator asks for a pass of every unfinished QuantEval now and then,
so neither a lost event nor an API server that refused us for a while leaves one stuck.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from quanteval import API_GROUP, API_VERSION, KIND
from quanteval.api.errors import InvalidSpecError
from quanteval.api.spec import QuantEval, parse_manifest
from quanteval.api.states import EventReason, Reason
from quanteval.matrix import expand
from quanteval_operator import metrics
from quanteval_operator.events import story_events
from quanteval_operator.jobs import (
    LABEL_EVAL_UID,
    LABEL_RUN,
    REPORT,
    SpecProblem,
    check_run_spec_size,
    effective_manifest,
    gpus_for,
    render_job,
    render_report_job,
    report_uri,
)
from quanteval_operator.kube import JobRefused, KubeClient
from quanteval_operator.observe import observe_job, observe_pod
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
    refused_runs,
    run_entries,
)

PLURAL = "quantevals"
COALESCE_SECONDS = 0.5
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # after the 1st, 2nd, ... failed pass in a row
INDEXES = ("evals_by_uid", "jobs_by_eval", "pods_by_eval")
PODLESS_SECONDS = 60.0  # a Job with no pod after this long: read why (its FailedCreate Event)


@dataclass
class OperatorState:
    """What the operator keeps between passes, in kopf's memo (shared by every object's copy)."""

    running: set[str] = field(default_factory=set)  # QuantEvals with a pass under way
    pending: set[str] = field(default_factory=set)  # ... and another asked for meanwhile
    written: dict[str, dict[str, Any]] = field(default_factory=dict)  # the status we wrote last
    # kopf's live indexes and a logger, from the first handler call (startup handlers get none)
    indexes: dict[str, Any] = field(default_factory=dict)
    tasks: set["asyncio.Task[None]"] = field(default_factory=set)  # resync passes in flight


@dataclass
class Options:
    """What `quanteval-operator`'s command line decides, set by main() before kopf starts."""

    namespaced: bool = False  # only the given namespaces: no cluster-wide scanning
    metrics_port: int = 0  # 0: no /metrics server
    resync_seconds: float = 300.0  # how often every unfinished QuantEval gets a pass; 0: never


OPTIONS = Options()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.peering.standalone = True
    settings.posting.level = 20  # INFO: our own Events only (loggers are not posted)
    settings.watching.server_timeout = 300
    # Namespaced: kopf serves the given namespaces and the resources found now, without watching
    # namespaces or CRDs cluster-wide, so the chart's namespaced Roles suffice.
    settings.scanning.disabled = OPTIONS.namespaced
    if OPTIONS.metrics_port:
        try:
            metrics.serve(OPTIONS.metrics_port)
        except RuntimeError as error:
            raise kopf.PermanentError(str(error)) from error
        logger.info(f"metrics on :{OPTIONS.metrics_port}/metrics")
    memo.settings = Settings.from_env()
    memo.kube = await KubeClient.connect()
    memo.state = OperatorState()
    if OPTIONS.resync_seconds > 0:
        memo.resync = asyncio.create_task(resync(memo, OPTIONS.resync_seconds))


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    if "resync" in memo:
        memo.resync.cancel()
    await memo.kube.close()


async def resync(memo: kopf.Memo, every: float) -> None:
    """Every `every` seconds, a pass for each QuantEval that has not finished."""
    state: OperatorState = memo.state
    while True:
        await asyncio.sleep(every)
        if not state.indexes:
            continue  # no handler has run yet: nothing is indexed
        for key, bodies in list(state.indexes["evals_by_uid"].items()):
            body: Mapping[str, Any] = next(iter(bodies), {})
            status = body.get("status") or {}
            if key in state.running or is_finished(status):
                continue
            task = asyncio.create_task(request_pass(key, memo, state.indexes))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)


def eval_key(namespace: str | None, uid: str | None) -> str:
    """How the indexes and passes name a QuantEval: its namespace and uid."""
    return f"{namespace}/{uid}"


def controller_uid(meta: Mapping[str, Any], kind: str) -> str:
    """The uid of the object's controller owner of `kind` ("" when there is none)."""
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller") and owner.get("kind") == kind:
            return str(owner.get("uid", ""))
    return ""


def _owned_by_eval(labels: Mapping[str, str], meta: Mapping[str, Any]) -> bool:
    """A Job is a QuantEval's only when that QuantEval controls it, not by its label alone."""
    return controller_uid(meta, KIND) == labels.get(LABEL_EVAL_UID)


@kopf.index(API_GROUP, API_VERSION, PLURAL)
def evals_by_uid(
    namespace: str | None, uid: str, body: kopf.Body, **_: Any
) -> dict[str, dict[str, Any]]:
    return {eval_key(namespace, uid): dict(body)}


@kopf.index("batch", "v1", "jobs", labels={LABEL_EVAL_UID: kopf.PRESENT})
def jobs_by_eval(
    name: str,
    namespace: str | None,
    uid: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    **_: Any,
) -> dict[str, tuple[str, JobObservation]]:
    if not _owned_by_eval(labels, meta):
        return {}  # a labelled Job some other hand made: never a run's
    created = str(meta.get("creationTimestamp", ""))
    observation = observe_job(name, annotations, spec, status, uid, created)
    return {eval_key(namespace, labels[LABEL_EVAL_UID]): (labels.get(LABEL_RUN, ""), observation)}


@kopf.index("", "v1", "pods", labels={LABEL_EVAL_UID: kopf.PRESENT})
def pods_by_eval(
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    **_: Any,
) -> dict[str, tuple[str, str, PodObservation]]:
    """By QuantEval: the run, the uid of the Job that controls the pod, and what it says (a pass
    keeps only the pods of its own Jobs)."""
    job_uid = controller_uid(meta, "Job")
    if not job_uid:
        return {}
    observation = observe_pod(name, meta, status)
    return {
        eval_key(namespace, labels[LABEL_EVAL_UID]): (
            labels.get(LABEL_RUN, ""),
            job_uid,
            observation,
        )
    }


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_EVAL_UID: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={LABEL_EVAL_UID: kopf.PRESENT})
async def child_changed(
    namespace: str | None, labels: Mapping[str, str], memo: kopf.Memo, **kwargs: Any
) -> None:
    await request_pass(eval_key(namespace, labels[LABEL_EVAL_UID]), memo, kwargs)


@kopf.on.event(
    "batch", "v1", "jobs", labels={LABEL_RUN: kopf.PRESENT, LABEL_EVAL_UID: kopf.PRESENT}
)
def job_metrics(
    uid: str,
    labels: Mapping[str, str],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    type: str | None,
    **_: Any,
) -> None:
    if labels[LABEL_RUN] != REPORT and _owned_by_eval(labels, meta):
        metrics.METRICS.job_seen(uid, status, deleted=type == "DELETED")


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def eval_changed(namespace: str | None, uid: str, memo: kopf.Memo, **kwargs: Any) -> None:
    await request_pass(eval_key(namespace, uid), memo, kwargs)


def retry_delay(failures: int) -> float:
    """Seconds before the next try after `failures` failed tries in a row (the last one caps)."""
    return RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]


async def request_pass(key: str, memo: kopf.Memo, indexes: Mapping[str, Any]) -> None:
    """Reconcile the QuantEval `key` (eval_key) now, or once more after the pass under way; a
    failed pass is tried again after RETRY_SECONDS (events meanwhile join that try)."""
    state: OperatorState = memo.state
    if not state.indexes:
        state.indexes = {name: indexes[name] for name in (*INDEXES, "logger")}
    if key in state.running:
        state.pending.add(key)
        return
    state.running.add(key)
    failures = 0
    try:
        while True:
            # Events come in bursts (a Job and its pod change together, 200 Jobs finish within
            # seconds): wait a moment so one pass and one status patch answer the whole burst.
            await asyncio.sleep(COALESCE_SECONDS)
            state.pending.discard(key)
            bodies = list(indexes["evals_by_uid"].get(key, []))
            if not bodies:
                state.written.pop(key, None)
                metrics.METRICS.forget(key)
                return  # deleted: its Jobs go with it through owner references
            try:
                jobs = list(indexes["jobs_by_eval"].get(key, []))
                ours = {job.uid for _, job in jobs}
                pods = [(run, pod) for run, owner, pod in indexes["pods_by_eval"].get(key, [])
                        if owner in ours]  # fmt: skip
                status = await reconcile(
                    kopf.Body(bodies[0]),
                    jobs,
                    pods,
                    memo.kube,
                    memo.settings,
                    indexes["logger"],
                    state.written,
                )
            except Exception as error:
                metrics.METRICS.reconcile_errors.inc()
                delay = retry_delay(failures)
                failures += 1
                indexes["logger"].warning(
                    f"pass of {key} failed ({type(error).__name__}: {error}); "
                    f"trying again in {delay:g} s"
                )
                await asyncio.sleep(delay)
                continue
            metrics.METRICS.record_runs(key, status.get("runs"))
            if refused_runs(status):  # a quota may free up: try again, backing off
                await asyncio.sleep(retry_delay(failures))
                failures += 1
                continue
            failures = 0
            if key not in state.pending:
                return
    finally:
        state.running.discard(key)


def _manifest(body: kopf.Body, settings: Settings) -> QuantEval:
    meta = body.metadata
    document = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid,
            "generation": meta.get("generation"),
        },
        "spec": dict(body.spec),
    }
    manifest = effective_manifest(parse_manifest(document, "spec"), settings)
    if not is_finished(body.get("status") or {}):  # a finished one starts no pod again
        check_run_spec_size(manifest)
    return manifest


def _tell_story(body: kopf.Body, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    for event in story_events(old, new):
        post = kopf.warn if event.warning else kopf.info
        post(body, reason=event.reason, message=event.message)


async def reconcile(
    body: kopf.Body,
    jobs: list[tuple[str, JobObservation]],
    pods: list[tuple[str, PodObservation]],
    kube: KubeClient,
    settings: Settings,
    logger: kopf.Logger,
    written: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """One pass; returns the status as the resource now holds it (this pass's over the last).
    `written`: the status this operator wrote last, by eval_key (updated here)."""
    meta = body.metadata
    generation = int(meta.get("generation") or 0)
    # The status this operator wrote last: the indexed body can lag behind our own patch, and
    # comparing with a stale status would post every run's Events again.
    previous = written.get(eval_key(meta.namespace, meta.uid)) or dict(body.get("status") or {})
    try:
        manifest = _manifest(body, settings)
    except (InvalidSpecError, SpecProblem) as error:
        message = error.message if isinstance(error, InvalidSpecError) else str(error)
        message = message.removeprefix("spec: invalid QuantEval\n")
        return await _refuse(kube, body, previous, generation, message, written)
    finished = finished_status(previous, generation)
    if finished is not None:  # its Jobs may be gone by now: none is created again
        if _differs(previous, finished):
            await _patch_status(kube, body, finished, written)
        return previous | finished
    spec = manifest.spec
    runs = expand(spec)
    job_by_run = {run_id: job for run_id, job in jobs}
    changed = [r.id for r in runs if r.id in job_by_run
               and job_by_run[r.id].content_hash not in ("", r.content_hash)]  # fmt: skip
    seen = previous.get("emotions")
    if seen and list(seen) != list(spec.emotion_names):
        message = (
            f"spec.emotions changed after the operator first saw this QuantEval (then: "
            f"{', '.join(seen)}; now: {', '.join(spec.emotion_names)}): revert it, or create a "
            "new QuantEval"
        )
        return await _refuse(kube, body, previous, generation, message, written)
    if changed:
        # CEL keeps the spec immutable but cannot read the untyped spec.emotions.
        message = (
            "spec.emotions (or another field that decides results) changed after creation; "
            f"runs {', '.join(changed)} were started with the old value: revert it, or create "
            "a new QuantEval"
        )
        return await _refuse(kube, body, previous, generation, message, written)
    active = sum(1 for job in job_by_run.values() if not (job.complete or job.failed_condition))
    room = 0 if spec.suspend else max(0, spec.parallelism - active)
    done = recorded_runs(previous)  # a finished run whose Job was removed is not run again
    refused: dict[str, str] = {}  # runs whose Job (or its pod) the API server refused, and why
    for run in [r for r in runs if r.id not in job_by_run and r.id not in done][:room]:
        job = render_job(manifest, run, settings)
        name = job["metadata"]["name"]
        try:
            job_by_run[run.id] = await _start_job(
                kube, body, job, logger, kind="run", purpose=f"run {run.id}",
                reason=EventReason.RUN_STARTED, message=f"run {run.id}: Job {name}",
            )  # fmt: skip
        except JobRefused as error:  # told as the run's reason; the other runs go on
            refused[run.id] = f"{Reason.CREATE_FAILED}: {error.message}"
            logger.warning(f"job {name} for run {run.id} refused ({error.status}): {error}")
    pods_by_run: dict[str, list[PodObservation]] = {}
    for run_id, pod in pods:
        pods_by_run.setdefault(run_id, []).append(pod)
    report_job = job_by_run.pop(REPORT, None)
    terminal = all(
        r.id in done
        or (
            job_by_run.get(r.id)
            and (job_by_run[r.id].complete or job_by_run[r.id].failed_condition)
        )
        for r in runs
    )
    if terminal and report_job is None:
        entries = run_entries(runs, job_by_run, pods_by_run, previous, spec.suspend)
        job = render_report_job(manifest, settings, failure_reasons(entries))
        name = job["metadata"]["name"]
        report_job = await _start_job(
            kube, body, job, logger, kind="report", purpose="the report",
            reason=EventReason.REPORT_STARTED, message=f"Job {name}",
        )  # fmt: skip
    report = ReportObservation(report_job, pods_by_run.pop(REPORT, []), report_uri(manifest))
    stuck = podless_jobs(job_by_run, pods_by_run, datetime.now(UTC), PODLESS_SECONDS)
    for run_id, podless in stuck.items():  # why the Job controller could not create its pod
        message = await kube.pod_create_failure(str(meta.namespace), podless.uid)
        if message:
            refused[run_id] = f"FailedCreate: {message}"
    unsized = sorted({r.model.name for r in runs if gpus_for(manifest, r, settings) is None})
    status = aggregate(
        runs, job_by_run, pods_by_run, previous, generation, spec.suspend, now_iso(),
        spec.baseline_precision, report, unsized, refused, spec.emotion_names,
    )  # fmt: skip
    if _differs(previous, status):
        await _patch_status(kube, body, status, written)
        _tell_story(body, previous, status)  # after the patch: only what the status records
    return previous | status


async def _refuse(
    kube: KubeClient,
    body: kopf.Body,
    previous: dict[str, Any],
    generation: int,
    message: str,
    written: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Valid=False with `message` (and its Warning, once), no Job created."""
    status = invalid_status(previous, generation, now_iso(), message)
    if _differs(previous, status):
        kopf.warn(body, reason=EventReason.INVALID_SPEC, message=message)
        await _patch_status(kube, body, status, written)
    return previous | status


async def _start_job(
    kube: KubeClient,
    body: kopf.Body,
    job: dict[str, Any],
    logger: kopf.Logger,
    *,
    kind: str,
    purpose: str,
    reason: str,
    message: str,
) -> JobObservation:
    """Create the Job (it may exist: a restarted operator, a lost race); count and tell if new."""
    name = job["metadata"]["name"]
    created = await kube.create_job(str(body.metadata.namespace), job)
    logger.info(f"job {name} for {purpose}: created={created}")
    if created:
        metrics.METRICS.job_created(kind)
        kopf.info(body, reason=reason, message=message)
    return JobObservation(name=name, active=1)


async def _patch_status(
    kube: KubeClient, body: kopf.Body, status: dict[str, Any], written: dict[str, dict[str, Any]]
) -> None:
    meta = body.metadata
    await kube.patch_status(str(meta.namespace), str(meta.name), status)
    written[eval_key(meta.namespace, meta.uid)] = status


def _differs(previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    return any(previous.get(key) != value for key, value in status.items())
