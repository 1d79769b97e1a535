"""Rendering one batch/v1 Job per run: plain data in, a manifest dict out."""

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from quanteval import API_GROUP, API_VERSION, KIND
from quanteval.api.errors import DETERMINISTIC_FAILURES
from quanteval.api.layout import REPORT_HTML, under
from quanteval.api.runspec import ENV_STRING_LIMIT, env_string_fits, run_spec_env
from quanteval.api.spec import OutputSpec, QuantEval, S3OutputSpec, S3SecretRef
from quanteval.api.termination import DEFAULT_TERMINATION_LOG, TERMINATION_LOG_ENV
from quanteval.cost import with_default_cost
from quanteval.engines import Engine, computes_on_cpu
from quanteval.matrix import Run, build_run_spec, expand, expect_arg, s3_evaluation_root
from quanteval.precisions import Precision
from quanteval.sizing import estimate_weights_bytes, run_gpus
from quanteval.storage import RETRY_BUDGET_ENV, SPOOL_DIR_ENV, SPOOL_LIMIT_ENV
from quanteval_operator.settings import Settings

LABEL_EVAL = f"{API_GROUP}/eval"
LABEL_EVAL_UID = f"{API_GROUP}/eval-uid"
LABEL_RUN = f"{API_GROUP}/run"
LABEL_ENGINE = f"{API_GROUP}/engine"
ANNOTATION_CONTENT_HASH = f"{API_GROUP}/content-hash"
# The report Job's value of LABEL_RUN; never a run id (those hold -<precision>).
REPORT = "report"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CONTAINER = "worker"
CACHE_DIR = "/var/cache/quanteval"
MAX_NAME = 63


class SpecProblem(ValueError):
    """The spec is valid on its own but cannot run in this cluster (named field, actionable)."""


def _cut(text: str, length: int) -> str:
    return text[:length].rstrip("-")


def job_name(eval_name: str, uid: str, run: Run) -> str:
    """`<eval, cut>-<model, cut>-<precision>[-<engine>]-<hash>`, at most 63 characters.

    The hash covers the eval's uid, so a deleted and recreated eval never meets its old Jobs.
    """
    digest = hashlib.sha256(f"{uid}/{run.id}".encode()).hexdigest()[:6]
    tail = run.id.removeprefix(f"{run.model.name}-")  # the precision, and a named engine
    room = MAX_NAME - len(tail) - len(digest) - 3
    eval_part = _cut(eval_name, room // 2)
    model_part = _cut(run.model.name, room - len(eval_part))
    return f"{eval_part}-{model_part}-{tail}-{digest}"


def _image_allowed(image: str, allowed: tuple[str, ...]) -> bool:
    return any(image.startswith(a[:-1]) if a.endswith("*") else image == a for a in allowed)


def check_tenancy(manifest: QuantEval, settings: Settings) -> None:
    """SpecProblem when the spec asks for what the cluster admin's tenancy settings refuse:
    without them, whoever may create a QuantEval may run any image with the namespace's
    Secrets and volume claims through an operator that may create Jobs."""
    spec = manifest.spec
    images = [("spec.workerImage", spec.worker_image)] + [
        (f"spec.workerImages.{engine}", image) for engine, image in spec.worker_images.items()
    ]
    allowed = settings.allowed_worker_images
    for field_name, image in images:
        if image and not settings.allow_worker_image:
            raise SpecProblem(
                f"{field_name}: this operator does not let a QuantEval choose its image "
                "(tenancy.allowWorkerImage: false); leave it out to use the operator's"
            )
        if image and allowed and not _image_allowed(image, allowed):
            raise SpecProblem(
                f"{field_name}: {image} is not among the images this operator allows "
                f"(tenancy.allowedWorkerImages: {', '.join(allowed)})"
            )
    s3 = spec.output.s3
    named = [
        ("spec.output.s3.secretRef.name", s3.secret_ref.name if s3 and s3.secret_ref else ""),
        (
            "spec.huggingFace.tokenSecretRef.name",
            spec.hugging_face.token_secret_ref.name if spec.hugging_face.token_secret_ref else "",
        ),
    ]
    for field_name, secret in named:
        if not secret:
            continue
        if not settings.allow_secret_refs:
            raise SpecProblem(
                f"{field_name}: this operator does not let a QuantEval name Secrets "
                "(tenancy.allowSecretRefs: false); leave it out to use the operator's"
            )
        if settings.allowed_secrets and secret not in settings.allowed_secrets:
            raise SpecProblem(
                f"{field_name}: Secret {secret!r} is not among those this operator allows "
                f"(tenancy.allowedSecrets: {', '.join(settings.allowed_secrets)})"
            )
    if spec.hugging_face.cache_volume_claim and not settings.allow_volume_claims:
        raise SpecProblem(
            "spec.huggingFace.cacheVolumeClaim: this operator does not let a QuantEval name a "
            "volume claim (tenancy.allowVolumeClaims: false)"
        )


def effective_manifest(manifest: QuantEval, settings: Settings) -> QuantEval:
    """The manifest with the operator's defaults filled in where the spec leaves them out
    (SpecProblem where it asks for what this cluster refuses)."""
    check_tenancy(manifest, settings)
    texts_from = manifest.spec.intensity.texts_from
    if "intensity" in manifest.spec.tasks and texts_from and not texts_from.startswith("s3://"):
        raise SpecProblem(
            f"spec.intensity.textsFrom: {texts_from} is not an s3:// object; a worker pod "
            "reads the texts from S3 (upload the file and give its s3:// URI)"
        )
    s3 = manifest.spec.output.s3
    bucket = s3.bucket if s3 else settings.s3_bucket
    if not bucket:
        raise SpecProblem(
            "spec.output.s3.bucket: not set, and the operator has no default bucket "
            "(Helm value worker.s3.bucket)"
        )
    secret = s3.secret_ref if s3 and s3.secret_ref else None
    if secret is None and settings.s3_secret_name:
        secret = S3SecretRef(name=settings.s3_secret_name)
    merged = S3OutputSpec(
        bucket=bucket,
        prefix=s3.prefix if s3 else "quanteval",
        endpoint=(s3.endpoint if s3 else "") or settings.s3_endpoint,
        region=s3.region if s3 else "",
        secret_ref=secret,
        retry_budget_seconds=(
            s3.retry_budget_seconds
            if s3 and s3.retry_budget_seconds is not None
            else settings.storage_retry_seconds
        ),
    )
    spec = manifest.spec.model_copy(update={"output": OutputSpec(s3=merged)})
    return with_default_cost(
        manifest.model_copy(update={"spec": spec}), settings.gpu_hour_usd, settings.cpu_hour_usd
    )


def check_run_spec_size(manifest: QuantEval) -> None:
    """SpecProblem when a run's spec cannot travel in a pod's environment even gzipped (its
    prompts and texts are what makes it large)."""
    runs = {run.model.name: run for run in expand(manifest.spec)}  # one run per model suffices
    for run in runs.values():
        spec = build_run_spec(manifest, run, s3_evaluation_root(manifest))
        name, value = run_spec_env(spec)
        if not env_string_fits(name, value):
            raise SpecProblem(
                f"spec.prompts: run {run.id}'s spec is {len(value) // 1024} KiB in {name} (gzipped "
                f"and base64), and a pod's environment variable holds at most "
                f"{ENV_STRING_LIMIT // 1024} KiB: fewer or shorter prompts or intensity.texts "
                "(or intensity.textsFrom for the texts)"
            )


def gpus_for(manifest: QuantEval, run: Run, settings: Settings) -> int | None:
    """GPUs for a run: the spec's number; none for a run that computes on the CPU (llama.cpp);
    else sized from `parameters`; None when unknown (a native checkpoint's bytes a weight are in
    its files, which the operator does not read)."""
    resources = manifest.spec.resources
    if resources.gpus != "auto":
        return resources.gpus
    if computes_on_cpu(run.engine, run.precision, run.model.source):
        return 0
    if run.model.parameters is None:
        return None
    weights = estimate_weights_bytes(run.model.parameters, run.precision)
    if weights is None:
        return None
    gpu_memory = resources.gpu_memory_gib or settings.gpu_memory_gib
    return run_gpus(weights, run.engine, gpu_memory, manifest.spec.vllm)


def run_device(manifest: QuantEval, run: Run, settings: Settings) -> str:
    """Where a run computes, as the worker records it (result.json device), for the status
    summary to compare like for like: cpu for a run given no GPU or on llama.cpp, cuda for one
    given GPUs; "" where the worker decides (auto at native on a source that may hold a GGUF
    file: engines.computes_on_cpu)."""
    on_cpu = computes_on_cpu(run.engine, run.precision, run.model.source)
    if on_cpu or gpus_for(manifest, run, settings) == 0:
        return "cpu"
    if run.engine == Engine.AUTO and run.precision == Precision.NATIVE:
        return ""
    return "cuda"


GIB = 2**30
SCRATCH_GIB = 4  # /tmp, logs and the classifier beside the model cache
# Of /tmp: what a run's finished work may take on disk while the store is down (worker.spool).
SPOOL_GIB = 2
SPOOL_ENV = [
    {"name": SPOOL_DIR_ENV, "value": "/tmp/quanteval-spool"},
    {"name": SPOOL_LIMIT_ENV, "value": str(SPOOL_GIB * 2**30)},
]
CHECKPOINT_BYTES_PER_PARAMETER = 2  # hub checkpoints are bf16/fp16 safetensors, as a rule


def ephemeral_storage(manifest: QuantEval, run: Run, settings: Settings) -> str:
    """The worker's disk: with the model cache on an emptyDir, the checkpoint's estimated size
    (2 bytes a parameter) plus a quarter and scratch, so that the scheduler picks a node whose
    disk a 70B download will not fill; the chart's default where the size is unknown; scratch
    alone where the cache is a volume claim."""
    claim = manifest.spec.hugging_face.cache_volume_claim or settings.hf_cache_claim
    if claim:
        return f"{SCRATCH_GIB + SPOOL_GIB}Gi"
    parameters = run.model.parameters
    if parameters is None:
        return settings.worker_ephemeral_storage
    checkpoint = parameters * CHECKPOINT_BYTES_PER_PARAMETER * 1.25
    return f"{math.ceil(checkpoint / GIB) + SCRATCH_GIB + SPOOL_GIB}Gi"


def labels_for(manifest: QuantEval, run: Run | None) -> dict[str, str]:
    """Labels of a run's Job and pods; with no run, of the report's."""
    meta = manifest.metadata
    return {
        "app.kubernetes.io/name": "quanteval-worker",
        "app.kubernetes.io/instance": meta.name,
        "app.kubernetes.io/component": "run" if run else REPORT,
        "app.kubernetes.io/part-of": "quanteval",
        "app.kubernetes.io/managed-by": "quanteval-operator",
        LABEL_EVAL: meta.name,
        LABEL_EVAL_UID: meta.uid or "",
        LABEL_RUN: run.id if run else REPORT,
        **({LABEL_ENGINE: run.engine.value} if run else {}),
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _credentials_env(manifest: QuantEval) -> list[dict[str, Any]]:
    """S3 endpoint, credentials and retry budget, and the hub token: Secrets as references,
    never values."""
    s3 = manifest.spec.output.s3
    assert s3 is not None  # effective_manifest fills it
    env: list[dict[str, Any]] = []
    if s3.retry_budget_seconds is not None:
        env.append({"name": RETRY_BUDGET_ENV, "value": str(s3.retry_budget_seconds)})
    if s3.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": s3.endpoint})
    if s3.region:
        env.append({"name": "AWS_REGION", "value": s3.region})
    if s3.secret_ref is not None:
        ref = s3.secret_ref
        env.append(_secret_env("AWS_ACCESS_KEY_ID", ref.name, ref.access_key_id_key))
        env.append(_secret_env("AWS_SECRET_ACCESS_KEY", ref.name, ref.secret_access_key_key))
    token = manifest.spec.hugging_face.token_secret_ref
    if token is not None:
        env.append(_secret_env("HF_TOKEN", token.name, token.key))
    return env


# torch sizes its thread pool by the node's cores, not by the container's CPU limit: a pod limited
# to 2 CPUs on a 64-core node would run 64 threads, throttled by the limit, and its times would
# measure the contention. The limit, rounded up to whole CPUs (as the kubelet does), is the pool.
THREADS_ENV = {
    "name": "OMP_NUM_THREADS",
    "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}},
}


# A pod that asks for no GPU still sees every GPU of its node where the NVIDIA runtime is the
# default and the image sets NVIDIA_VISIBLE_DEVICES=all (CUDA images do): it would compute on GPUs
# other pods were given, and count them as its own. `void` makes the runtime hand it none.
NO_GPU_ENV = {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}


def worker_image(manifest: QuantEval, settings: Settings, engine: Engine) -> str:
    """The image of a run on `engine`: the spec's for that engine, the operator's for that
    engine, the spec's workerImage, the operator's worker image; the first set."""
    spec = manifest.spec
    return (
        spec.worker_images.get(engine)
        or settings.engine_images.get(engine.value)
        or spec.worker_image
        or settings.worker_image
    )


def _pod_spec(
    manifest: QuantEval,
    settings: Settings,
    engine: Engine,
    command: list[str],
    env: list[dict[str, Any]],
    limits: dict[str, str],
    requests: dict[str, str],
) -> dict[str, Any]:
    """A non-root worker pod with a read-only root filesystem, a cache and a /tmp volume."""
    spec = manifest.spec
    resources = spec.resources
    cache_claim = spec.hugging_face.cache_volume_claim or settings.hf_cache_claim
    cache_volume: dict[str, Any] = (
        {"name": "cache", "persistentVolumeClaim": {"claimName": cache_claim}}
        if cache_claim
        else {"name": "cache", "emptyDir": {}}
    )
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": worker_image(manifest, settings, engine),
        "imagePullPolicy": settings.image_pull_policy,
        "command": command,
        "env": [
            {"name": "QUANTEVAL_CACHE_DIR", "value": CACHE_DIR},
            {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
            THREADS_ENV,
            *env,
        ],
        "resources": {"limits": limits, "requests": requests},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [
            {"name": "cache", "mountPath": CACHE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [cache_volume, {"name": "tmp", "emptyDir": {}}],
    }
    if resources.node_selector:
        pod_spec["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in resources.tolerations
        ]
    if resources.priority_class_name:
        pod_spec["priorityClassName"] = resources.priority_class_name
    return pod_spec


def with_shared_memory(pod_spec: dict[str, Any], size: str) -> None:
    """A memory-backed /dev/shm for vLLM's tensor-parallel ranks, which share tensors through
    it; a container's own /dev/shm is 64 MiB. It counts against the pod's memory limit."""
    pod_spec["volumes"].append(
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": size}}
    )
    pod_spec["containers"][0]["volumeMounts"].append({"name": "dshm", "mountPath": "/dev/shm"})


def _owned_job(
    manifest: QuantEval,
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    job_spec: dict[str, Any],
    pod_spec: dict[str, Any],
) -> dict[str, Any]:
    meta = manifest.metadata
    if not meta.uid:
        raise ValueError("the QuantEval has no uid: render Jobs from the stored object")
    job_labels = dict(labels)
    if manifest.spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = manifest.spec.queue_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": job_labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": KIND,
                    "name": meta.name,
                    "uid": meta.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            **job_spec,
            # Kueue admits a suspended Job by unsuspending it.
            "suspend": bool(manifest.spec.queue_name),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def render_job(manifest: QuantEval, run: Run, settings: Settings) -> dict[str, Any]:
    """The Job of one run. `manifest` must carry metadata.uid (it is the owner)."""
    spec = manifest.spec
    resources = spec.resources
    gpu_name = resources.gpu_resource_name or settings.gpu_resource_name
    gpus = gpus_for(manifest, run, settings)
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if gpus is None or gpus > 0:
        limits[gpu_name] = str(gpus or 1)
    if resources.memory:
        limits["memory"] = requests["memory"] = resources.memory
    limits["cpu"] = requests["cpu"] = resources.cpu or settings.worker_cpu
    disk = ephemeral_storage(manifest, run, settings)
    limits["ephemeral-storage"] = requests["ephemeral-storage"] = disk
    run_spec = build_run_spec(manifest, run, s3_evaluation_root(manifest))
    name, value = run_spec_env(run_spec)
    env = [{"name": name, "value": value}, *_credentials_env(manifest), *SPOOL_ENV]
    if gpus == 0:
        env.append(NO_GPU_ENV)
    command = settings.command_for(run.engine)
    pod_spec = _pod_spec(manifest, settings, run.engine, command, env, limits, requests)
    if run.engine == Engine.VLLM and gpus is not None and gpus > 1:
        with_shared_memory(pod_spec, settings.worker_shm_size)
    job_spec = {
        "backoffLimit": spec.backoff_limit,
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [int(code) for code in DETERMINISTIC_FAILURES],
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
    }
    name = job_name(manifest.metadata.name, manifest.metadata.uid or "", run)
    annotations = {ANNOTATION_CONTENT_HASH: run.content_hash}
    return _owned_job(manifest, name, labels_for(manifest, run), annotations, job_spec, pod_spec)


def report_job_name(eval_name: str, uid: str) -> str:
    digest = hashlib.sha256(f"{uid}/{REPORT}".encode()).hexdigest()[:6]
    return f"{_cut(eval_name, MAX_NAME - len(REPORT) - len(digest) - 2)}-{REPORT}-{digest}"


def render_report_job(
    manifest: QuantEval, settings: Settings, failures: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The Job that reads every run from S3 and writes the report next to them (no GPU).
    `failures`: by run, why it failed (the report says it instead of "wrote nothing")."""
    meta = manifest.metadata
    root = s3_evaluation_root(manifest)
    labels = labels_for(manifest, None)
    # Every run is named, so a run that failed before writing anything shows as Missing.
    reasons = failures or {}
    expected = [
        arg
        for run in expand(manifest.spec)
        for arg in ("--expect", expect_arg(run, reasons.get(run.id, "")))
    ]
    margin = manifest.spec.report.equivalence_margin_pp
    options = [] if margin is None else ["--equivalence-margin-pp", f"{margin:g}"]
    command = [*settings.report_command, root, *expected, *options]
    requests = {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"}
    limits = {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "1Gi"}
    # `quanteval report` writes the comparisons' verdicts there, for the status (no S3 here).
    termination = {"name": TERMINATION_LOG_ENV, "value": DEFAULT_TERMINATION_LOG}
    env = [*_credentials_env(manifest), termination]
    pod_spec = _pod_spec(manifest, settings, Engine.AUTO, command, env, limits, requests)
    job_spec = {"backoffLimit": 1, "activeDeadlineSeconds": 3600}
    name = report_job_name(meta.name, meta.uid or "")
    return _owned_job(manifest, name, labels, {}, job_spec, pod_spec)


def report_uri(manifest: QuantEval) -> str:
    return under(s3_evaluation_root(manifest), REPORT_HTML)
