"""What an evaluation survives on a real control plane, each a row of docs/operating.md's "what
survives what": a node lost, a pod evicted, the API server down 15 s, the operator killed.

One module fixture runs the four scenarios in one namespace, each on an evaluation of its own, so
that their waits overlap (the pod garbage collector's quarantine of a deleted node is 40 s or
more, the outage 15 s) instead of adding up; each test reads its own scenario's outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devcluster.controlplane import Cluster
from devcluster.minio import MinioServer
from devcluster.waiting import wait_until
from quanteval.api.result import RunResult
from quanteval.storage import S3Storage
from tests.operator.harness import (
    BUCKET,
    OperatorProcess,
    condition,
    get_eval,
    jobs,
    manifest,
    max_concurrent,
    runs_by_id,
    s3_secret,
    wait_finished,
)
from tests.plugins.cluster import fresh_namespace

LOST_NODE = "qe-node-2"
LOST_TAINT = "quanteval.io/test-lost-node"  # only the evaluation "lost" tolerates that node
EVALUATIONS = ("lost", "preempted", "whole", "restart")
RESTART_PRECISIONS = ("fp32", "bf16", "fp16", "int8")


@dataclass
class Disrupted:
    """The namespace the scenarios ran in, and what could only be seen while they ran."""

    cluster: Cluster
    namespace: str
    s3: MinioServer
    first_lost_node: str = ""  # the node of the pod of "lost" that was cut off
    cut_off_mid_generation: dict[str, bool] = field(default_factory=dict)
    ready_before: dict[str, Any] = field(default_factory=dict)  # node 1's Ready, before the outage
    restart_jobs_at_kill: int = 0

    def body(self, name: str) -> dict[str, Any]:
        return get_eval(self.cluster, self.namespace, name)

    def evaluation_storage(self, name: str) -> S3Storage:
        uid = self.body(name)["metadata"]["uid"]
        found = S3Storage(
            f"s3://{BUCKET}/quanteval/{self.namespace}/{name}-{uid}", self.s3.endpoint
        )
        found._client = self.s3.client()
        return found

    def storage(self, name: str) -> S3Storage:
        """The prefix of the evaluation's run tiny-fp32."""
        return self.evaluation_storage(name).child("runs/tiny-fp32")

    def jobs_of(self, name: str) -> list[dict[str, Any]]:
        return [
            j
            for j in jobs(self.cluster, self.namespace)
            if j["metadata"]["labels"]["quanteval.io/eval"] == name
        ]

    def generations(self, name: str) -> dict[str, str]:
        lines = (self.storage(name).read_text("generations.jsonl") or "").splitlines()
        return {record["key"]: record["text"] for record in map(json.loads, lines)}

    def events(self, name: str) -> str:
        return self.cluster.kubectl(
            "get", "events", "-o", "jsonpath={.items[*].message}",
            f"--field-selector=involvedObject.kind=QuantEval,involvedObject.name={name}",
            namespace=self.namespace,
        ).stdout  # fmt: skip


def _node_ready(cluster: Cluster) -> dict[str, Any]:
    out = cluster.kubectl("get", "node", cluster.node_name, "-o", "json").stdout
    conditions = json.loads(out)["status"]["conditions"]
    ready: dict[str, Any] = next(c for c in conditions if c["type"] == "Ready")
    return ready


def _pod_nodes(cluster: Cluster, namespace: str, name: str) -> list[str]:
    """The nodes the run pods of evaluation `name` are bound to ("": not yet)."""
    selector = f"quanteval.io/eval={name},app.kubernetes.io/component=run"
    out = cluster.kubectl("get", "pods", "-l", selector, "-o", "json", namespace=namespace).stdout
    return [p["spec"].get("nodeName", "") for p in json.loads(out)["items"]]


def _first_batch(store: S3Storage) -> None:
    wait_until(
        lambda: store.read_text("partial/generation-plan.json"),
        timeout=300, interval=0.1, what="the first batch under partial/",
    )  # fmt: skip


@pytest.fixture(scope="module")
def disrupted(
    cluster: Cluster, s3_server: MinioServer, operator: OperatorProcess, tiny_model: str
) -> Iterator[Disrupted]:
    """In order: evaluation "lost" starts on a second node (node 1 cordoned until its pod is
    bound), which vanishes once a batch is under partial/ (its agent and pod processes
    SIGKILLed: nothing flushed, nothing reported) and whose Node is then deleted, as a cloud
    provider does for a vanished instance. "preempted" is evicted once a batch is under partial/
    (the Eviction API: DisruptionTarget, as a node drain or a preemption); "whole", of the same
    spec, runs uninterrupted. Then the API server is down 15 s while "whole" generates. Then
    "restart" (four runs, two at a time) starts, the operator is killed once its first two Jobs
    exist and started again once they finished. Every evaluation is waited to its end."""
    namespace = fresh_namespace(cluster)
    cluster.kubectl("apply", "-f", "-", input=s3_secret(s3_server, namespace))
    outcome = Disrupted(cluster, namespace, s3_server)
    prompts = [f"Prompt {i} about <class>" for i in range(5)]
    generation = {"preset": "paper", "promptFormat": "chat", "maxNewTokens": 160,
                  "samplesPerPrompt": 3, "batchSize": 2}  # fmt: skip
    spec = {"precisions": ["fp32"], "emotions": ["joy", "anger"], "prompts": prompts,
            "generation": generation, "backoffLimit": 2, "parallelism": 1}  # fmt: skip
    models = [{"name": "tiny", "source": tiny_model}]
    lost = spec | {
        "prompts": prompts[:3],
        "generation": generation | {"samplesPerPrompt": 2},  # 12 samples, 6 batches
        "resources": {"gpus": 1, "tolerations": [{"key": LOST_TAINT, "operator": "Exists"}]},
    }

    def apply(name: str, **given: Any) -> None:
        cluster.kubectl("apply", "-f", "-", namespace=namespace, input=manifest(name, **given))

    cluster.add_node(LOST_NODE, taints=f"{LOST_TAINT}=true:NoSchedule")
    node_lost = False
    try:
        cluster.kubectl("cordon", cluster.node_name)
        try:
            apply("lost", models=models, **lost)
            outcome.first_lost_node = wait_until(
                lambda: "".join(_pod_nodes(cluster, namespace, "lost")),
                timeout=60, interval=0.2, what="the pod of lost bound to a node",
            )  # fmt: skip
        finally:
            cluster.kubectl("uncordon", cluster.node_name)
        apply("preempted", models=models, **spec)
        apply("whole", models=models, **spec)

        on_lost_node, preempted, whole = (outcome.storage(n) for n in EVALUATIONS[:3])
        _first_batch(on_lost_node)
        cluster.lose_node(LOST_NODE)
        node_lost = True
        outcome.cut_off_mid_generation["lost"] = on_lost_node.read_text("result.json") is None
        cluster.kubectl("delete", "node", LOST_NODE)

        _first_batch(preempted)
        (pod,) = cluster.kubectl(
            "get", "pods", "-o", "name", "-l",
            "quanteval.io/eval=preempted,app.kubernetes.io/component=run", namespace=namespace,
        ).stdout.split()  # fmt: skip
        name = pod.removeprefix("pod/")
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
        cluster.kubectl(
            "create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction",
            "-f", "-", input=json.dumps(eviction),
        )  # fmt: skip
        outcome.ready_before = _node_ready(cluster)
        outcome.cut_off_mid_generation["whole"] = whole.read_text("result.json") is None
        cluster.restart("kube-apiserver", down_seconds=15)

        apply("restart", models=models, **spec | {
            "precisions": list(RESTART_PRECISIONS), "parallelism": 2,
            "prompts": prompts[:2], "generation": generation | {"samplesPerPrompt": 2},
        })  # fmt: skip

        def restart_jobs() -> list[dict[str, Any]]:
            return outcome.jobs_of("restart")

        wait_until(lambda: len(restart_jobs()) >= 2, timeout=60, what="two Jobs of restart")
        operator.kill()
        try:
            outcome.restart_jobs_at_kill = len(restart_jobs())
            wait_until(
                lambda: all(j.get("status", {}).get("succeeded") for j in restart_jobs()),
                timeout=300, what="the first Jobs of restart to finish while the operator is down",
            )  # fmt: skip
        finally:
            operator.start()
        for evaluation in EVALUATIONS:
            wait_finished(cluster, namespace, evaluation, timeout=600)
        yield outcome
    finally:
        if not node_lost:  # the fixture failed before it lost the node: lose it now
            cluster.lose_node(LOST_NODE)
        cluster.kubectl("delete", "node", LOST_NODE, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_run_on_a_lost_node_resumes_on_another_node_after_its_last_batch(
    disrupted: Disrupted,
) -> None:
    assert disrupted.first_lost_node == LOST_NODE
    assert disrupted.cut_off_mid_generation["lost"]
    body = disrupted.body("lost")
    assert condition(body, "Succeeded")["status"] == "True", body["status"]
    run = runs_by_id(body)["tiny-fp32"]
    assert run["attempts"] == 2  # the worker's count: the Job ignored the lost pod
    assert 0 < run["metrics"]["resumedSamples"] < 12
    assert len(disrupted.generations("lost")) == 12  # every sample once
    assert _pod_nodes(disrupted.cluster, disrupted.namespace, "lost") == [
        disrupted.cluster.node_name
    ]
    (job,) = disrupted.jobs_of("lost")
    # The pod garbage collector marked the pod DisruptionTarget: not counted against backoffLimit.
    assert job["status"].get("failed", 0) == 0


def test_an_evicted_worker_pod_is_resumed_by_the_next_pod_with_the_texts_of_an_uninterrupted_run(
    disrupted: Disrupted,
) -> None:
    body = disrupted.body("preempted")
    assert condition(body, "Succeeded")["status"] == "True", body["status"]
    run = runs_by_id(body)["tiny-fp32"]
    assert run["attempts"] == 2  # the worker's count: the Job ignored the evicted pod
    resumed = run["metrics"]["resumedSamples"]
    assert 0 < resumed < 30
    stored = disrupted.storage("preempted").read_text("result.json")
    assert [a.attempt for a in RunResult.model_validate_json(stored or "").attempts] == [1, 2]
    texts = disrupted.generations("preempted")
    assert len(texts) == 30 and texts == disrupted.generations("whole")
    told = disrupted.events("preempted")
    assert f"resumed after {resumed} samples an earlier attempt generated" in told
    (job,) = disrupted.jobs_of("preempted")
    assert job["status"].get("failed", 0) == 0  # DisruptionTarget: the podFailurePolicy ignores it


def test_the_api_server_down_15_s_leaves_the_node_ready_and_makes_no_job_twice(
    disrupted: Disrupted,
) -> None:
    assert disrupted.cut_off_mid_generation["whole"]  # the outage began while it generated
    body = disrupted.body("whole")
    assert condition(body, "Succeeded")["status"] == "True", body["status"]
    assert [r["attempts"] for r in body["status"]["runs"]] == [1]
    made = [
        j["metadata"]["labels"]["quanteval.io/eval"]
        for j in jobs(disrupted.cluster, disrupted.namespace)
    ]
    assert sorted(made) == sorted(["lost", "preempted", "whole"] + ["restart"] * 4)
    after = _node_ready(disrupted.cluster)
    assert after["status"] == "True"
    assert after["lastTransitionTime"] == disrupted.ready_before["lastTransitionTime"]


def test_the_operator_killed_mid_run_resumes_without_duplicates(disrupted: Disrupted) -> None:
    assert disrupted.restart_jobs_at_kill == 2
    body = disrupted.body("restart")
    assert condition(body, "Succeeded")["status"] == "True", body["status"]
    made = disrupted.jobs_of("restart")
    assert len(made) == 4
    assert len({j["metadata"]["labels"]["quanteval.io/run"] for j in made}) == 4
    assert all(r["attempts"] == 1 for r in body["status"]["runs"])


def test_an_evaluation_runs_to_success_within_its_parallelism(disrupted: Disrupted) -> None:
    """The status, the Jobs, the results and the report of "restart" (four runs, two at a time),
    complete although its operator was killed and replaced while it ran."""
    body = disrupted.body("restart")
    assert condition(body, "Succeeded")["reason"] == "AllRunsSucceeded"
    assert condition(body, "Valid")["status"] == "True"
    # No finalizer: deleting a QuantEval never waits for the operator.
    assert not body["metadata"].get("finalizers")
    assert condition(body, "Progressing")["status"] == "False"
    status = body["status"]
    assert status["progress"] == "4/4"
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert {"startTime", "completionTime"} <= set(status)
    runs = runs_by_id(body)
    assert set(runs) == {f"tiny-{p}" for p in RESTART_PRECISIONS}
    for run in runs.values():
        assert run["state"] == "Succeeded"
        assert 0 <= run["metrics"]["f1Macro"] <= 1 and run["metrics"]["weightsBytes"] > 0
    assert status["summary"]["baseline"] == "fp32"
    assert status["summary"]["bestRun"] in runs

    made = disrupted.jobs_of("restart")
    assert max_concurrent(made) <= 2
    for job in made:
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "QuantEval" and owner["uid"] == body["metadata"]["uid"]

    storage = disrupted.evaluation_storage("restart")
    assert storage.list_children("runs") == sorted(runs)
    result = RunResult.model_validate_json(
        storage.child("runs/tiny-int8").read_text("result.json") or ""
    )
    assert round(result.metrics.f1_macro, 4) == runs["tiny-int8"]["metrics"]["f1Macro"]
    assert result.environment["cpuThreads"] == 1  # the pod's CPU limit, through the downward API

    assert status["summary"]["reportUri"] == f"{storage.uri}/report.html"
    assert condition(body, "ReportReady")["status"] == "True"
    assert len(jobs(disrupted.cluster, disrupted.namespace, "report")) == len(EVALUATIONS)
    assert "<img" in (storage.read_text("report.html") or "")
