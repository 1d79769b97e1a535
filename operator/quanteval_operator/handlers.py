"""The kopf handlers: indexes of Jobs and pods, and one reconciling daemon per QuantEval.

Level-based: each pass reads the QuantEval, the Jobs and pods that the indexes hold for it, creates
the Jobs that are due (deterministic names, so a restarted operator never duplicates one), and
writes the whole status (one writer owns `status.runs`). Child events wake the daemon at once; a
slow timer catches anything missed.
"""

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from quanteval import API_GROUP, API_VERSION
from quanteval.exitcodes import InvalidSpecError
from quanteval.matrix import expand
from quanteval.spec import QuantEval, parse_manifest
from quanteval_operator.jobs import (
    LABEL_EVAL_UID,
    LABEL_RUN,
    SpecProblem,
    effective_manifest,
    gpus_for,
    render_job,
)
from quanteval_operator.kube import KubeClient
from quanteval_operator.observe import observe_job, observe_pod
from quanteval_operator.settings import Settings
from quanteval_operator.status import (
    JobObservation,
    PodObservation,
    aggregate,
    invalid_status,
)

PLURAL = "quantevals"
RESYNC_SECONDS = 30.0
_wakeups: dict[str, asyncio.Event] = {}


def _wakeup(uid: str) -> asyncio.Event:
    return _wakeups.setdefault(uid, asyncio.Event())


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.peering.standalone = True
    settings.posting.level = 20  # INFO: our own Events only (loggers are not posted)
    settings.watching.server_timeout = 300
    memo.settings = Settings.from_env()
    memo.kube = await KubeClient.connect()


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()


@kopf.index("batch", "v1", "jobs", labels={LABEL_EVAL_UID: kopf.PRESENT})
def jobs_by_eval(
    name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    **_: Any,
) -> dict[str, tuple[str, JobObservation]]:
    observation = observe_job(name, annotations, spec, status)
    return {labels[LABEL_EVAL_UID]: (labels.get(LABEL_RUN, ""), observation)}


@kopf.index("", "v1", "pods", labels={LABEL_EVAL_UID: kopf.PRESENT})
def pods_by_eval(
    name: str,
    labels: Mapping[str, str],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    **_: Any,
) -> dict[str, tuple[str, PodObservation]]:
    return {labels[LABEL_EVAL_UID]: (labels.get(LABEL_RUN, ""), observe_pod(name, meta, status))}


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_EVAL_UID: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={LABEL_EVAL_UID: kopf.PRESENT})
def child_changed(labels: Mapping[str, str], **_: Any) -> None:
    _wakeup(labels[LABEL_EVAL_UID]).set()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
def eval_changed(uid: str, **_: Any) -> None:
    _wakeup(uid).set()


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
    return effective_manifest(parse_manifest(document, "spec"), settings)


def _post_run_events(body: kopf.Body, old: list[Any], new: list[dict[str, Any]]) -> None:
    before = {r.get("id"): r.get("state") for r in old if isinstance(r, Mapping)}
    for run in new:
        state = run["state"]
        if before.get(run["id"]) == state:
            continue
        if state == "Succeeded":
            f1 = run.get("metrics", {}).get("f1Macro")
            kopf.info(body, reason="RunSucceeded", message=f"run {run['id']} succeeded (F1 {f1})")
        elif state == "Failed":
            kopf.warn(body, reason="RunFailed", message=f"run {run['id']}: {run.get('reason')}")


async def reconcile(
    body: kopf.Body,
    jobs: list[tuple[str, JobObservation]],
    pods: list[tuple[str, PodObservation]],
    kube: KubeClient,
    settings: Settings,
    logger: kopf.Logger,
) -> None:
    meta = body.metadata
    namespace, name = str(meta.namespace), str(meta.name)
    generation = int(meta.get("generation") or 0)
    previous = dict(body.get("status") or {})
    try:
        manifest = _manifest(body, settings)
    except (InvalidSpecError, SpecProblem) as error:
        message = error.message if isinstance(error, InvalidSpecError) else str(error)
        message = message.removeprefix("spec: invalid QuantEval\n")
        status = invalid_status(previous, generation, now_iso(), message)
        if _differs(previous, status):
            kopf.warn(body, reason="InvalidSpec", message=message)
            await kube.patch_status(namespace, name, status)
        return
    spec = manifest.spec
    runs = expand(spec)
    job_by_run = {run_id: job for run_id, job in jobs}
    changed = [r.id for r in runs if r.id in job_by_run
               and job_by_run[r.id].content_hash not in ("", r.content_hash)]  # fmt: skip
    if changed:
        # CEL keeps the spec immutable but cannot read the untyped spec.emotions.
        message = (
            "spec.emotions (or another field that decides results) changed after creation; "
            f"runs {', '.join(changed)} were started with the old value: revert it, or create "
            "a new QuantEval"
        )
        status = invalid_status(previous, generation, now_iso(), message)
        if _differs(previous, status):
            kopf.warn(body, reason="InvalidSpec", message=message)
            await kube.patch_status(namespace, name, status)
        return
    active = sum(1 for job in job_by_run.values() if not (job.complete or job.failed_condition))
    room = 0 if spec.suspend else max(0, spec.parallelism - active)
    for run in [r for r in runs if r.id not in job_by_run][:room]:
        job = render_job(manifest, run, settings)
        created = await kube.create_job(namespace, job)
        logger.info(f"job {job['metadata']['name']} for run {run.id}: created={created}")
        if created:
            kopf.info(
                body, reason="RunStarted", message=f"run {run.id}: Job {job['metadata']['name']}"
            )
        job_by_run[run.id] = JobObservation(name=job["metadata"]["name"], active=1)
    pods_by_run: dict[str, list[PodObservation]] = {}
    for run_id, pod in pods:
        pods_by_run.setdefault(run_id, []).append(pod)
    unsized = sorted({r.model.name for r in runs if gpus_for(manifest, r, settings) is None})
    status = aggregate(
        runs, job_by_run, pods_by_run, previous, generation, spec.suspend, now_iso(),
        spec.baseline_precision, unsized,
    )  # fmt: skip
    if _differs(previous, status):
        _post_run_events(body, list(previous.get("runs") or []), status["runs"])
        await kube.patch_status(namespace, name, status)


def _differs(previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    return any(previous.get(key) != value for key, value in status.items())


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, cancellation_timeout=10)
async def run_evaluation(
    body: kopf.Body,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    jobs_by_eval: kopf.Index[str, tuple[str, JobObservation]] = kwargs["jobs_by_eval"]
    pods_by_eval: kopf.Index[str, tuple[str, PodObservation]] = kwargs["pods_by_eval"]
    wakeup = _wakeup(uid)

    async def stop() -> None:
        await stopped.wait()

    stopping = asyncio.create_task(stop())
    try:
        while not stopped:
            wakeup.clear()
            await reconcile(
                body,
                list(jobs_by_eval.get(uid, [])),
                list(pods_by_eval.get(uid, [])),
                memo.kube,
                memo.settings,
                logger,
            )
            woken = asyncio.create_task(wakeup.wait())
            await asyncio.wait(
                {woken, stopping}, timeout=RESYNC_SECONDS, return_when="FIRST_COMPLETED"
            )
            woken.cancel()
    finally:
        stopping.cancel()
        _wakeups.pop(uid, None)
