"""The operator on a real control plane: Jobs, status, failures, restarts, garbage collection."""

from __future__ import annotations

import json
from pathlib import Path

from devcluster.controlplane import Cluster
from devcluster.minio import MinioServer
from devcluster.waiting import wait_until
from quanteval.api.layout import RATINGS_FILE
from quanteval.storage import S3Storage
from tests.builders import long_prompts
from tests.operator.harness import (
    BUCKET,
    OperatorProcess,
    condition,
    event_counts,
    get_eval,
    jobs,
    manifest,
    runs_by_id,
    wait_finished,
)


def _quota(cluster: Cluster, namespace: str, name: str, hard: dict[str, str]) -> None:
    """A ResourceQuota, once its controller has counted what it limits (admission needs that)."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
             "spec": {"hard": hard}}  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=json.dumps(quota), namespace=namespace)
    wait_until(
        lambda: cluster.kubectl(
            "get", "resourcequota", name, "-o", "jsonpath={.status.hard}", namespace=namespace
        ).stdout.strip(),
        timeout=60, what=f"the quota controller to count {name}",
    )  # fmt: skip


def test_a_failing_run_fails_with_its_reason_while_the_others_complete(
    cluster: Cluster, eval_namespace: str, tiny_model: str, s3_server: MinioServer
) -> None:
    models = [
        {"name": "tiny", "source": tiny_model},
        {"name": "missing", "source": "/nonexistent/model.gguf"},
    ]
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        namespace=eval_namespace,
        input=manifest("mixed", models, backoffLimit=3),
    )
    body = wait_finished(cluster, eval_namespace, "mixed", timeout=600)
    runs = runs_by_id(body)
    assert runs["tiny-fp32"]["state"] == "Succeeded"
    failed = runs["missing-fp32"]
    assert failed["state"] == "Failed"
    assert failed["reason"].startswith("CannotLoad: model path /nonexistent/model.gguf")
    assert failed["attempts"] == 1  # exit code 4 fails the Job at once, despite backoffLimit 3
    succeeded = condition(body, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "RunsFailed")
    assert "missing-fp32 (CannotLoad)" in succeeded["message"]
    # The report is written all the same, with the failed run in it.
    assert condition(body, "ReportReady")["status"] == "True"
    uri = body["status"]["summary"]["reportUri"]
    storage = S3Storage(uri.rsplit("/", 1)[0], s3_server.endpoint)
    storage._client = s3_server.client()
    assert "missing-fp32" in (storage.read_text("report.json") or "")


def test_a_missing_secret_shows_as_the_runs_reason(
    cluster: Cluster, namespace: str, tiny_model: str, operator: OperatorProcess
) -> None:
    """No S3 Secret in this namespace: the pod cannot start, and the run says why."""
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        namespace=namespace,
        input=manifest("nosecret", [{"name": "tiny", "source": tiny_model}]),
    )

    def reason() -> str | None:
        runs = get_eval(cluster, namespace, "nosecret").get("status", {}).get("runs", [])
        text = runs[0].get("reason", "") if runs else ""
        return text if "CreateContainerConfigError" in text else None

    text = wait_until(
        reason, timeout=120, what="the missing Secret in the run's reason", interval=1
    )
    assert "quanteval-s3" in text


def test_deleting_an_evaluation_collects_its_jobs_and_pods(
    cluster: Cluster, eval_namespace: str, tiny_model: str
) -> None:
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        namespace=eval_namespace,
        input=manifest("doomed", [{"name": "tiny", "source": tiny_model}]),
    )
    wait_until(lambda: jobs(cluster, eval_namespace), timeout=60, what="the Job")
    cluster.kubectl("delete", "quanteval", "doomed", "--wait=true", namespace=eval_namespace)

    def gone() -> bool:
        pods = cluster.kubectl("get", "pods", "-o", "name", namespace=eval_namespace).stdout
        return not jobs(cluster, eval_namespace) and not pods.strip()

    wait_until(gone, timeout=120, what="the garbage collector to remove Jobs and pods")


def test_an_evaluation_with_the_intensity_task_reports_its_figures_in_the_status(
    cluster: Cluster,
    eval_namespace: str,
    smollm2_dir: Path,
    s3_server: MinioServer,
    operator: OperatorProcess,
) -> None:
    """SmolLM2 at fp32 and int8 rates the built-in corpus's joy and anger texts in its pods."""
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        namespace=eval_namespace,
        input=manifest(
            "nuance",
            [{"name": "smollm2", "source": str(smollm2_dir)}],
            precisions=["fp32", "int8"],
            tasks=["generation", "intensity"],
            intensity={"method": "greedy"},  # the status's figures; the worker tests expected's
            parallelism=2,
        ),
    )
    body = wait_finished(cluster, eval_namespace, "nuance", timeout=900)
    assert condition(body, "Succeeded")["status"] == "True", operator.logs()[-4000:]
    runs = runs_by_id(body)
    for run in runs.values():
        metrics = run["metrics"]
        assert 0 <= metrics["ratingParseFailureRate"] <= 1 and metrics["ratingsPerSecond"] > 0
        assert "f1Macro" in metrics  # the generation task's figures beside the ratings'
    (compared,) = body["status"]["summary"]["comparisons"]
    assert compared["id"] == "smollm2-int8" and compared["ratingMeanAbsChange"] >= 0

    uid = body["metadata"]["uid"]
    storage = S3Storage(
        f"s3://{BUCKET}/quanteval/{eval_namespace}/nuance-{uid}", s3_server.endpoint
    )
    storage._client = s3_server.client()
    ratings = (storage.child("runs/smollm2-int8").read_text(RATINGS_FILE) or "").splitlines()
    assert len(ratings) == 50  # joy and anger: 25 texts each
    assert "Intensity ratings" in (storage.read_text("report.md") or "")
    told = cluster.kubectl(
        "get", "events", "-o", "jsonpath={.items[*].message}",
        "--field-selector=involvedObject.kind=QuantEval,involvedObject.name=nuance",
        namespace=eval_namespace,
    ).stdout  # fmt: skip
    assert "intensity ratings: rho vs level" in told


def test_a_job_the_quota_refuses_is_the_runs_reason_and_runs_once_it_is_allowed(
    cluster: Cluster, eval_namespace: str, tiny_model: str, operator: OperatorProcess
) -> None:
    _quota(cluster, eval_namespace, "one-job", {"count/jobs.batch": "1"})
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        namespace=eval_namespace,
        input=manifest(
            "quota", [{"name": "tiny", "source": tiny_model}], precisions=["fp32", "int8"],
            parallelism=2,
        ),
    )  # fmt: skip

    def refused() -> str | None:
        runs = get_eval(cluster, eval_namespace, "quota").get("status", {}).get("runs", [])
        reasons = [r.get("reason", "") for r in runs if r.get("reason", "").startswith("Create")]
        return reasons[0] if reasons else None

    reason = wait_until(refused, timeout=60, what="a run refused by the quota", interval=0.5)
    assert reason.startswith("CreateFailed: ") and "exceeded quota: one-job" in reason
    assert len(jobs(cluster, eval_namespace)) == 1  # the other run went on
    assert event_counts(cluster, eval_namespace, "quota").get("RunWaiting", 0) >= 1

    cluster.kubectl("delete", "resourcequota", "one-job", namespace=eval_namespace)
    body = wait_finished(cluster, eval_namespace, "quota", timeout=600)
    assert condition(body, "Succeeded")["status"] == "True", operator.logs()[-4000:]
    assert all(r["state"] == "Succeeded" and "reason" not in r for r in body["status"]["runs"])


def test_a_foreign_job_or_pod_with_an_evaluations_labels_changes_nothing(
    cluster: Cluster, eval_namespace: str, tiny_model: str, operator: OperatorProcess
) -> None:
    body = manifest("owned", [{"name": "tiny", "source": tiny_model}], suspend=True)
    cluster.kubectl("apply", "-f", "-", namespace=eval_namespace, input=body)
    uid = get_eval(cluster, eval_namespace, "owned")["metadata"]["uid"]
    labels = {"quanteval.io/eval-uid": uid, "quanteval.io/run": "tiny-fp32"}
    container = {"name": "c", "image": "busybox", "command": ["true"]}
    pod_spec = {"restartPolicy": "Never", "containers": [container]}
    foreign = [
        {  # suspended: a run's Job would hold the run Queued; someone else's must not
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "not-a-run", "labels": labels},
            "spec": {"suspend": True, "template": {"spec": pod_spec}},
        },
        {  # Pending for good: no node has this label
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "not-a-runs-pod", "labels": labels},
            "spec": pod_spec | {"nodeSelector": {"quanteval.io/no-such-node": "x"}},
        },
    ]
    for item in foreign:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(item), namespace=eval_namespace)
    cluster.kubectl(
        "patch", "qe", "owned", "--type=merge", "-p", '{"spec": {"suspend": false}}',
        namespace=eval_namespace,
    )  # fmt: skip

    done = wait_finished(cluster, eval_namespace, "owned", timeout=600)
    assert condition(done, "Succeeded")["status"] == "True", operator.logs()[-4000:]
    (run,) = done["status"]["runs"]
    assert run["state"] == "Succeeded" and run["attempts"] == 1 and run["metrics"]["f1Macro"] >= 0
    owned = [j for j in jobs(cluster, eval_namespace) if j["metadata"].get("ownerReferences")]
    assert [j["metadata"]["ownerReferences"][0]["uid"] for j in owned] == [uid]


def test_an_evaluation_whose_prompts_total_over_200_kib_runs(
    cluster: Cluster, eval_namespace: str, tiny_model: str, operator: OperatorProcess
) -> None:
    """Linux refuses one environment string over 128 KiB: the run spec travels gzipped."""
    vocabulary = ["day", "of", "joy", "rain", "we", "feel", "hope", "calm", "warm", "light"]
    prompts = long_prompts(230, vocabulary)
    assert len(json.dumps(prompts)) > 200 * 1024
    body = manifest(
        "large", [{"name": "tiny", "source": tiny_model}], prompts=prompts,
        generation={"maxNewTokens": 8, "maxLength": 400},  # about 240 tokens a prompt
        resources={"gpus": 1, "cpu": "2"},  # its 400 samples run alone: both CPUs
    )  # fmt: skip
    cluster.kubectl("apply", "-f", "-", namespace=eval_namespace, input=body)

    done = wait_finished(cluster, eval_namespace, "large", timeout=600)

    assert condition(done, "Succeeded")["status"] == "True", operator.logs()[-4000:]
    (run,) = done["status"]["runs"]
    assert run["state"] == "Succeeded" and run["metrics"]["f1Macro"] >= 0
    (job,) = jobs(cluster, eval_namespace)
    env = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "QUANTEVAL_RUN_SPEC_GZIP" in env


def test_a_job_whose_pod_the_quota_refuses_shows_the_job_controllers_reason(
    cluster: Cluster, eval_namespace: str, tiny_model: str, operator: OperatorProcess
) -> None:
    _quota(cluster, eval_namespace, "no-pods", {"pods": "0"})
    body = manifest("podless", [{"name": "tiny", "source": tiny_model}])
    cluster.kubectl("apply", "-f", "-", namespace=eval_namespace, input=body)

    def reason() -> str | None:
        runs = get_eval(cluster, eval_namespace, "podless").get("status", {}).get("runs", [])
        text = str(runs[0].get("reason", "")) if runs else ""
        return text if text.startswith("FailedCreate") else None

    # The Job exists; its controller's FailedCreate Event says why it has no pod, read by the
    # pass the operator asks for itself when the Job's podless time is up.
    text = wait_until(reason, timeout=120, what="the pod's refusal as the run's reason")
    assert "exceeded quota: no-pods" in text, text
    cluster.kubectl("delete", "resourcequota", "no-pods", namespace=eval_namespace)
    done = wait_finished(cluster, eval_namespace, "podless", timeout=600)
    assert condition(done, "Succeeded")["status"] == "True", operator.logs()[-4000:]


def test_an_evaluation_on_two_engines_runs_each_run_in_its_engines_environment(
    cluster: Cluster,
    eval_namespace: str,
    smollm2_dir: Path,
    s3_server: MinioServer,
    operator: OperatorProcess,
) -> None:
    """SmolLM2 at bf16 on auto and on vLLM, and QuantEval's W8A8 on vLLM: one Job each, run by
    its engine's worker (vLLM's from .venv-vllm), compared on its own engine, and the engine
    effect and the KV budget in the status and the report."""
    models = [
        {"name": "smollm2", "source": str(smollm2_dir), "engines": ["auto", "vllm"]},
        {
            "name": "smollm2-rtn", "source": str(smollm2_dir), "precisions": ["w8a8-int8"],
            "engines": ["vllm"], "baselineModel": "smollm2",
        },
    ]  # fmt: skip
    cluster.kubectl(
        "apply", "-f", "-", namespace=eval_namespace,
        input=manifest("engines", models, precisions=["bf16"], parallelism=2),
    )  # fmt: skip
    body = wait_finished(cluster, eval_namespace, "engines", timeout=900)
    assert condition(body, "Succeeded")["status"] == "True", operator.logs()[-4000:]

    runs = runs_by_id(body)
    assert set(runs) == {"smollm2-bf16", "smollm2-bf16-vllm", "smollm2-rtn-w8a8-int8-vllm"}
    # The KV cache vLLM allocated of its 1 GiB budget (whole blocks), from its own config.
    assert 0.99 * 2**30 < runs["smollm2-bf16-vllm"]["metrics"]["kvCacheBudgetBytes"] <= 2**30
    assert "kvCacheBudgetBytes" not in runs["smollm2-bf16"]["metrics"]
    compared = {c["id"]: c for c in body["status"]["summary"]["comparisons"]}
    assert compared["smollm2-rtn-w8a8-int8-vllm"]["against"] == "smollm2-bf16-vllm"
    effect = compared["smollm2-bf16-vllm"]
    assert (effect["engineEffect"], effect["against"]) == (True, "smollm2-bf16")
    assert effect["verdict"]  # the report Job's, for the engine effect
    containers = {
        job["metadata"]["labels"]["quanteval.io/run"]: job["spec"]["template"]["spec"]
        for job in jobs(cluster, eval_namespace)
    }
    vllm = containers["smollm2-bf16-vllm"]["containers"][0]
    assert vllm["image"] == "quanteval-worker-vllm:test"
    assert vllm["command"][0].endswith(".venv-vllm/bin/quanteval-worker")
    assert containers["smollm2-bf16"]["containers"][0]["image"] == "quanteval-worker:test"

    uid = body["metadata"]["uid"]
    storage = S3Storage(
        f"s3://{BUCKET}/quanteval/{eval_namespace}/engines-{uid}", s3_server.endpoint
    )
    storage._client = s3_server.client()
    assert "## Engine effect" in (storage.read_text("report.md") or "")
