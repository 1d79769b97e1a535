"""The kopf handlers: indexes of QuantEvals, Jobs and pods, and event-driven reconciliation.

Level-based: any event of a QuantEval or of its Jobs and pods asks for a pass (passes.py: never
two of one QuantEval at once, a burst as one more, failures retried with backoff). A pass reads
what the indexes hold, asks plan.py what to do (a pure function), creates the Jobs that are due
(deterministic names, so a restarted operator never duplicates one), writes the whole status (one
writer owns `status.runs`) and then tells the story in Events.

Only event and index handlers: kopf puts no finalizer on a QuantEval (daemons and timers would),
so deleting one never waits for the operator. A resync task started with the operator asks for a
pass of every unfinished QuantEval now and then, so neither a lost event nor an API server that
refused us for a while leaves one stuck; a pass that sees a Job waiting for its pod asks for
another when that Job's wait makes it podless (no event marks that moment).
"""

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from quanteval import API_GROUP, API_VERSION, KIND
from quanteval.api.states import Reason
from quanteval_operator import metrics
from quanteval_operator.jobs import LABEL_EVAL_UID, LABEL_RUN, REPORT
from quanteval_operator.kube import JobRefused, KubeClient
from quanteval_operator.observe import observe_job, observe_pod
from quanteval_operator.passes import Outcome, PassQueue
from quanteval_operator.plan import JobToCreate, Observations, plan_pass
from quanteval_operator.settings import Settings
from quanteval_operator.status import JobObservation, PodObservation, is_finished, refused_runs

PLURAL = "quantevals"
INDEXES = ("evals_by_uid", "jobs_by_eval", "pods_by_eval")
# The logger of passes no object's event asked for (the resync's, a recheck's).
BACKGROUND_LOGGER = logging.getLogger("quanteval_operator.background")


@dataclass
class OperatorState:
    """What the operator keeps between passes, in kopf's memo (shared by every object's copy)."""

    passes: PassQueue = field(default_factory=PassQueue)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)  # the status we wrote last
    # kopf's live indexes and a logger, from the first handler call (startup handlers get none)
    indexes: dict[str, Any] = field(default_factory=dict)
    tasks: set["asyncio.Task[None]"] = field(default_factory=set)  # background passes in flight
    # By QuantEval: the pass asked for when a Job waiting for its pod becomes podless.
    rechecks: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    # By namespace: when its FailedCreate Events were read, and their messages by Job uid.
    failed_create_reads: dict[str, tuple[float, dict[str, str]]] = field(default_factory=dict)
    # How long a namespace's FailedCreate Events, once read, answer for its podless Jobs: a pass
    # runs every few seconds while Jobs wait for pods, and one list a half minute tells why.
    failed_creates_seconds: float = 30.0

    async def failed_creates(self, kube: KubeClient, namespace: str) -> dict[str, str]:
        """The Job controller's latest FailedCreate message by Job uid in `namespace`, read at
        most once per failed_creates_seconds."""
        read_at, messages = self.failed_create_reads.get(namespace, (0.0, {}))
        if time.monotonic() - read_at > self.failed_creates_seconds:
            messages = await kube.pod_create_failures(namespace)
            self.failed_create_reads[namespace] = (time.monotonic(), messages)
        return messages


@dataclass
class Options:
    """What `quanteval-operator`'s command line decides, set by main() before kopf starts."""

    namespaced: bool = False  # only the given namespaces: no cluster-wide scanning
    metrics_port: int = 0  # 0: no /metrics server
    resync_seconds: float = 300.0  # how often every unfinished QuantEval gets a pass; 0: never
    # The API server sends only our children (a labelSelector on the Job and pod watches); off,
    # kopf receives every Job and pod and filters them here: only to measure what that costs.
    server_side_selectors: bool = True


OPTIONS = Options()


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
    if OPTIONS.server_side_selectors:
        # kopf's handler label filters run client-side: without these, the operator would list
        # and watch every Job and pod of the cluster (memory, and a slow start on a busy one).
        settings.watching.label_selectors["batch", "v1", "jobs"] = LABEL_EVAL_UID
        settings.watching.label_selectors["v1", "pods"] = LABEL_EVAL_UID
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
    memo.state = OperatorState(
        passes=PassQueue(retry_seconds=memo.settings.retry_seconds),
        failed_creates_seconds=memo.settings.failed_creates_seconds,
    )
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
            if state.passes.busy(key) or is_finished(status):
                continue
            start_pass(key, memo)


def start_pass(key: str, memo: kopf.Memo) -> None:
    """A pass of `key` in the background, no object's event having asked for it."""
    state: OperatorState = memo.state
    indexes = state.indexes | {"logger": BACKGROUND_LOGGER}
    task = asyncio.create_task(request_pass(key, memo, indexes))
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)


def recheck(key: str, memo: kopf.Memo, delay: float) -> None:
    """A pass of `key` in `delay` seconds, unless one is already due sooner."""
    state: OperatorState = memo.state
    loop = asyncio.get_running_loop()
    when = loop.time() + delay
    due = state.rechecks.get(key)
    if due is not None:
        if due.when() <= when:
            return
        due.cancel()

    def start() -> None:
        state.rechecks.pop(key, None)
        start_pass(key, memo)

    state.rechecks[key] = loop.call_at(when, start)


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


async def request_pass(key: str, memo: kopf.Memo, indexes: Mapping[str, Any]) -> None:
    """Reconcile the QuantEval `key` (eval_key) now, or once more after the pass under way."""
    state: OperatorState = memo.state
    if not state.indexes:
        state.indexes = {name: indexes[name] for name in (*INDEXES, "logger")}
    logger: kopf.Logger = indexes["logger"]  # the object's, from kopf (resync: its own)

    def failed(error: Exception, delay: float) -> None:
        metrics.METRICS.reconcile_errors.inc()
        logger.warning(
            f"pass of {key} failed ({type(error).__name__}: {error}); trying again in {delay:g} s"
        )

    await state.passes.request(key, lambda: run_pass(key, memo, logger), failed)


def observe(
    key: str, indexes: Mapping[str, Any], written: Mapping[str, Any]
) -> Observations | None:
    """What the indexes hold of QuantEval `key`: only its own Jobs, and only their pods."""
    bodies = list(indexes["evals_by_uid"].get(key, []))
    if not bodies:
        return None
    body = bodies[0]
    jobs = list(indexes["jobs_by_eval"].get(key, []))
    ours = {job.uid for _, job in jobs}
    pods = [(run, pod) for run, owner, pod in indexes["pods_by_eval"].get(key, []) if owner in ours]
    # The status this operator wrote last: the indexed body can lag behind our own patch, and
    # comparing with a stale status would post every run's Events again.
    previous = written.get(key) or dict(body.get("status") or {})
    return Observations(body, jobs, pods, previous, datetime.now(UTC))


async def run_pass(key: str, memo: kopf.Memo, logger: kopf.Logger) -> Outcome:
    """One pass: plan, create the plan's Jobs and read why podless Jobs have no pod, plan again
    with the answers until nothing is left to create, then write the status and tell the story."""
    state: OperatorState = memo.state
    observations = observe(key, state.indexes, state.written)
    if observations is None:  # deleted: its Jobs go with it through owner references
        state.written.pop(key, None)
        if key in state.rechecks:
            state.rechecks.pop(key).cancel()
        metrics.METRICS.forget(key)
        return Outcome.GONE
    body = kopf.Body(cast(kopf.RawBody, dict(observations.body)))
    namespace = str(body.metadata.namespace)
    plan = plan_pass(observations, memo.settings)
    created: dict[str, JobObservation] = {}
    refused: dict[str, str] = {}
    podless_read = False
    while plan.create or (plan.podless and not podless_read):
        for todo in plan.create:
            try:
                created[todo.run_id] = await _create_job(memo.kube, body, todo, logger)
            except JobRefused as error:  # told as the run's reason; the other runs go on
                refused[todo.run_id] = f"{Reason.CREATE_FAILED}: {error.message}"
                logger.warning(
                    f"job {todo.name} for {todo.run_id} refused ({error.status}): {error}"
                )
        if plan.podless and not podless_read:
            podless_read = True
            messages = await state.failed_creates(memo.kube, namespace)
            for run_id, job in plan.podless.items():
                if messages.get(job.uid):
                    refused[run_id] = f"FailedCreate: {messages[job.uid]}"
        observations = replace(observations, created=dict(created), refused=dict(refused))
        plan = plan_pass(observations, memo.settings)
    if plan.status is not None:
        await memo.kube.patch_status(namespace, str(body.metadata.name), plan.status)
        state.written[key] = plan.merged  # the whole status, not only what changed
        for event in plan.events:  # after the write: only what the status records
            post = kopf.warn if event.warning else kopf.info
            post(body, reason=event.reason, message=event.message)
    metrics.METRICS.record_runs(key, plan.merged.get("runs"))
    if plan.recheck_seconds is not None:
        recheck(key, memo, plan.recheck_seconds)
    return Outcome.RETRY if refused_runs(plan.merged) else Outcome.DONE


async def _create_job(
    kube: KubeClient, body: kopf.Body, todo: JobToCreate, logger: kopf.Logger
) -> JobObservation:
    """Create the Job (it may exist: a restarted operator, a lost race); count and tell if new."""
    created = await kube.create_job(str(body.metadata.namespace), todo.job)
    logger.info(f"job {todo.name} for {todo.run_id}: created={created}")
    if created:
        metrics.METRICS.job_created(todo.kind)
        kopf.info(body, reason=todo.reason, message=todo.message)
    return JobObservation(name=todo.name, active=1)
