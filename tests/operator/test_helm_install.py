"""`helm install` of the chart into the real cluster: the objects and their labels, the
ServiceAccount's permissions in both RBAC scopes (asked of the API server with the account's own
token), values the chart refuses, `helm uninstall` leaving no operator object but the CRD, and the
end to end: the chart's Deployment runs the operator (the node agent runs its command and args with
its environment and a token of the chart's ServiceAccount), which runs the shipped quickstart.

Where only the objects matter, the Deployment's pod is held Pending with a nodeSelector no node
has; its creation proves the API server (and its PodSecurity admission, `restricted` in the
release's namespace) accepts the chart's pod spec.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.controlplane import Cluster
from devcluster.helm import helm
from devcluster.minio import MinioServer
from devcluster.ports import free_port
from devcluster.waiting import wait_until
from quanteval.storage import S3Storage
from tests.operator.harness import (
    ROOT,
    VLLM_WORKER,
    OperatorProcess,
    condition,
    event_counts,
    get_eval,
    jobs,
    runs_by_id,
    s3_secret,
    wait_finished,
)

CHART = ROOT / "charts" / "quanteval-operator"
CRD_NAME = "quantevals.quanteval.io"
HOLD = {"quanteval.io/test-no-such-node": "held"}  # keeps the pod Pending (see the docstring)

JSON = dict[str, Any]


class Release:
    """One helm release of the chart in `namespace`, uninstalled at the end whatever happens."""

    def __init__(self, cluster: Cluster, namespace: str, tmp_path: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = f"qe-helm-{uuid.uuid4().hex[:6]}"
        self.fullname = f"{self.name}-quanteval-operator"
        self.tmp_path = tmp_path
        self.installed = False

    def helm(self, *args: str, check: bool = True) -> str:
        result = helm(
            *args,
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--namespace={self.namespace}",
            check=False,
        )
        if check:
            assert result.returncode == 0, f"helm {args[0]} failed:\n{result.stderr}"
        return result.stdout + result.stderr

    def install(self, values: JSON, *, hold: bool = True) -> str:
        """Install; `hold` keeps the operator's pod Pending (no node matches its selector)."""
        path = self.tmp_path / f"{self.name}-values.yaml"
        path.write_text(yaml.safe_dump(({"nodeSelector": HOLD} if hold else {}) | values))
        out = self.helm("install", self.name, str(CHART), f"--values={path}", "--timeout=2m")
        self.installed = True
        return out

    def uninstall(self) -> None:
        self.helm("uninstall", self.name, "--wait", "--timeout=2m")
        self.installed = False

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"

    @property
    def account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"


@pytest.fixture
def release(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Release]:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    made = Release(cluster, namespace, tmp_path)
    yield made
    if made.installed:
        made.helm("uninstall", made.name, "--wait", "--timeout=2m", check=False)


@pytest.fixture
def other_namespaces(cluster: Cluster) -> Iterator[list[str]]:
    """Two more fresh namespaces: one to watch, one not."""
    names = [f"qe-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    yield names
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def _items(cluster: Cluster, kind: str, selector: str, namespace: str | None = None) -> list[JSON]:
    scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
    out = cluster.kubectl("get", kind, "-l", selector, "-o", "json", *scope).stdout
    items: list[JSON] = json.loads(out)["items"]
    return items


def _can_i(cluster: Cluster, account: str, *request: str, namespace: str | None = None) -> bool:
    scope = [f"--namespace={namespace}"] if namespace else []
    result = cluster.kubectl("auth", "can-i", *request, f"--as={account}", *scope, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stdout + result.stderr
    return answer == "yes"


def _labels_are_the_charts(obj: JSON, release: Release) -> None:
    labels = obj["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "quanteval-operator", labels
    assert labels["app.kubernetes.io/instance"] == release.name, labels
    assert labels["app.kubernetes.io/managed-by"] == "Helm", labels
    assert labels["app.kubernetes.io/part-of"] == "quanteval", labels
    assert labels["helm.sh/chart"].startswith("quanteval-operator-"), labels
    assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == release.name


def _restricted_is_enforced(cluster: Cluster, namespace: str) -> None:
    """A privileged pod is refused in the namespace: the admission the chart's pod passed is on."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "qe/none",
                    "command": ["true"],
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    refused = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        namespace=namespace,
        input=json.dumps(pod),
        check=False,
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr, refused.stderr


def _the_pod_is_created(cluster: Cluster, release: Release) -> JSON:
    pods = wait_until(
        lambda: _items(cluster, "pods", release.selector, release.namespace),
        timeout=60,
        what="the Deployment's pod to be created (PodSecurity restricted admits it)",
    )
    (pod,) = pods
    assert pod["spec"]["serviceAccountName"] == release.fullname
    assert pod["spec"]["nodeSelector"] == HOLD
    assert pod["status"]["phase"] == "Pending"
    return pod


def _nothing_left(cluster: Cluster, release: Release, namespaces: list[str]) -> None:
    def gone() -> bool:
        cluster_wide = [
            o
            for kind in ("clusterroles", "clusterrolebindings")
            for o in _items(cluster, kind, release.selector)
        ]
        namespaced = [
            o
            for kind in (
                "deployments",
                "replicasets",
                "pods",
                "serviceaccounts",
                "roles",
                "rolebindings",
            )
            for ns in namespaces
            for o in _items(cluster, kind, release.selector, ns)
        ]
        return not cluster_wide and not namespaced

    wait_until(gone, timeout=90, what=f"every object of {release.name} to be deleted", interval=1)
    listed = release.helm("list", "--all", "--output=json")
    assert release.name not in listed
    crd = cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout
    assert json.loads(crd)["metadata"]["name"] == CRD_NAME, "helm uninstall must keep the CRD"


def test_install_cluster_scope_and_uninstall(cluster: Cluster, release: Release) -> None:
    out = release.install({})
    assert "STATUS: deployed" in out
    assert "Mode: cluster" in out  # NOTES
    assert "get quantevals" in out

    crd = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"

    (account,) = _items(cluster, "serviceaccounts", release.selector, release.namespace)
    (deployment,) = _items(cluster, "deployments", release.selector, release.namespace)
    (role,) = _items(cluster, "clusterroles", release.selector)
    (binding,) = _items(cluster, "clusterrolebindings", release.selector)
    for obj in (account, deployment, role, binding):
        assert obj["metadata"]["name"] == release.fullname
        _labels_are_the_charts(obj, release)
    assert not _items(cluster, "roles", release.selector)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": release.fullname, "namespace": release.namespace}
    ]

    pod = _the_pod_is_created(cluster, release)
    _restricted_is_enforced(cluster, release.namespace)
    _labels_are_the_charts(deployment, release)
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == release.name

    # Cluster scope: the account may do its work in any namespace, and never read Secrets.
    for ns in ("default", release.namespace):
        assert _can_i(cluster, release.account, "list", "quantevals.quanteval.io", namespace=ns)
        assert _can_i(cluster, release.account, "create", "jobs.batch", namespace=ns)
        assert not _can_i(cluster, release.account, "get", "secrets", namespace=ns)
        assert not _can_i(cluster, release.account, "delete", "jobs.batch", namespace=ns)
    assert _can_i(cluster, release.account, "list", "namespaces")

    release.uninstall()
    _nothing_left(cluster, release, [release.namespace])


def test_install_namespaces_scope(
    cluster: Cluster, release: Release, other_namespaces: list[str]
) -> None:
    watched, unwatched = other_namespaces
    out = release.install({"rbac": {"scope": "namespaces"}, "watchNamespaces": [watched]})
    assert "Mode: namespaces" in out
    assert f"kubectl -n {watched} get quantevals" in out

    assert not _items(cluster, "clusterroles", release.selector)
    assert not _items(cluster, "clusterrolebindings", release.selector)
    (role,) = _items(cluster, "roles", release.selector)
    (binding,) = _items(cluster, "rolebindings", release.selector)
    for obj in (role, binding):
        assert obj["metadata"]["namespace"] == watched
        _labels_are_the_charts(obj, release)
    (deployment,) = _items(cluster, "deployments", release.selector, release.namespace)
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["QUANTEVAL_NAMESPACES"] == watched
    _the_pod_is_created(cluster, release)

    # Asked as the account (impersonation) ...
    who = release.account
    assert _can_i(cluster, who, "list", "quantevals.quanteval.io", namespace=watched)
    assert _can_i(cluster, who, "watch", "quantevals.quanteval.io", namespace=watched)
    assert _can_i(
        cluster, who, "patch", "quantevals.quanteval.io", "--subresource=status", namespace=watched
    )
    assert _can_i(cluster, who, "list", "jobs.batch", namespace=watched)
    assert _can_i(cluster, who, "create", "jobs.batch", namespace=watched)
    assert _can_i(cluster, who, "create", "events", namespace=watched)
    assert not _can_i(cluster, who, "get", "secrets", namespace=watched)
    assert not _can_i(cluster, who, "patch", "quantevals.quanteval.io", namespace=watched)
    for ns in (unwatched, release.namespace, "default"):
        assert not _can_i(cluster, who, "list", "quantevals.quanteval.io", namespace=ns)
        assert not _can_i(cluster, who, "list", "jobs.batch", namespace=ns)
    assert not _can_i(cluster, who, "list", "namespaces")
    assert not _can_i(cluster, who, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not _can_i(cluster, who, "list", "quantevals.quanteval.io", "--all-namespaces")

    # ... and with a token of its own, as the operator's pod would be.
    token = cluster.kubectl(
        "create", "token", release.fullname, namespace=release.namespace
    ).stdout.strip()
    for kind in ("quantevals", "jobs"):
        allowed = cluster.kubectl("get", kind, f"--token={token}", namespace=watched, check=False)
        assert allowed.returncode == 0, allowed.stderr
        denied = cluster.kubectl("get", kind, f"--token={token}", namespace=unwatched, check=False)
        assert denied.returncode != 0
        assert "forbidden" in denied.stderr.lower()
        assert who in denied.stderr

    release.uninstall()
    _nothing_left(cluster, release, [release.namespace, watched])


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicaCount": 2}, "/replicaCount"),
        ({"rbac": {"scope": "namespaces"}}, "/watchNamespaces"),
        ({"image": {"repository": "Not A/Valid Image"}}, "/image/repository"),
        ({"surprise": True}, "'surprise' not allowed"),
    ],
    ids=["replicas", "scope-without-namespaces", "image", "unknown-key"],
)
def test_install_refuses_bad_values(
    cluster: Cluster, release: Release, values: JSON, named: str
) -> None:
    path = release.tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = release.helm("install", release.name, str(CHART), f"--values={path}", check=False)
    assert "INSTALLATION FAILED" in out or "Error" in out, out
    assert named in out, out
    assert release.name not in release.helm("list", "--all", "--output=json")
    assert not _items(cluster, "serviceaccounts", release.selector, release.namespace)


def _http_get(url: str) -> tuple[int, str] | None:
    """(status, body) of a GET to a local endpoint, None while nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as answer:
            return int(answer.status), answer.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def _image(job: JSON) -> str:
    (main,) = job["spec"]["template"]["spec"]["containers"]
    return str(main["image"])


def _shipped_quickstart() -> JSON:
    """manifests/examples/quickstart.yaml as shipped, with one prompt and two emotions (CI time)."""
    document: JSON = yaml.safe_load((ROOT / "manifests/examples/quickstart.yaml").read_text())
    document["spec"].pop("promptSet")
    document["spec"]["prompts"] = ["Write a text that expresses <class>"]
    document["spec"]["emotions"] = ["joy", "anger"]
    return document


@pytest.fixture
def paused_operator(operator: OperatorProcess) -> Iterator[None]:
    """The session's operator stopped for the test: one operator at a time, as in a cluster."""
    operator.stop()
    yield
    operator.start()


def test_the_charts_operator_runs_the_shipped_quickstart(
    cluster: Cluster,
    paused_operator: None,
    release: Release,
    other_namespaces: list[str],
    s3_server: MinioServer,
) -> None:
    watched, unwatched = other_namespaces
    cluster.kubectl("label", "namespace", watched, "pod-security.kubernetes.io/enforce=restricted")
    cluster.kubectl("apply", "-f", "-", input=s3_secret(s3_server, watched))
    quickstart = _shipped_quickstart()
    output = quickstart["spec"]["output"]["s3"]
    with contextlib.suppress(Exception):
        s3_server.create_bucket(output["bucket"])
    liveness, metrics = free_port(), free_port()
    out = release.install(
        {
            "rbac": {"scope": "namespaces"},
            "watchNamespaces": [watched],
            "liveness": {"port": liveness},
            "metrics": {"port": metrics},
            "worker": {
                "image": "quanteval-worker:test",
                # vllm runs: their own image, and the worker of .venv-vllm on the node agent.
                "images": {"vllm": "quanteval-worker-vllm:test"},
                "commands": {"vllm": [str(VLLM_WORKER)]},
                "cpu": "1",  # the quick start runs two at a time on this 2-core machine
                "s3": {
                    "endpoint": s3_server.endpoint,
                    "bucket": output["bucket"],
                    "secretName": output["secretRef"]["name"],
                },
            },
            "tenancy": {
                "allowedWorkerImages": ["quanteval-worker:*"],
                "allowedSecrets": [output["secretRef"]["name"]],
            },
        },
        hold=False,
    )
    assert f"kubectl -n {watched} get quantevals" in out

    def operator_pod(not_uid: str = "") -> JSON | None:
        """The operator's running pod (not the one with uid `not_uid`, not one being deleted)."""
        pods = [
            p
            for p in _items(cluster, "pods", release.selector, release.namespace)
            if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
            and p["metadata"]["uid"] != not_uid
        ]
        return pods[0] if pods else None

    def healthy() -> None:
        health = wait_until(
            lambda: _http_get(f"http://127.0.0.1:{liveness}/healthz"),
            timeout=60,
            what="kopf's liveness endpoint to answer",
        )
        assert health[0] == 200, health

    first = wait_until(operator_pod, timeout=60, what="the operator's pod to run")
    logs = [cluster.pod_dir(release.namespace, first["metadata"]["name"]) / "log"]
    healthy()

    ignored = quickstart | {"metadata": {"name": "ignored"}}
    cluster.kubectl("apply", "-f", "-", namespace=unwatched, input=yaml.safe_dump(ignored))
    cluster.kubectl("apply", "-f", "-", namespace=watched, input=yaml.safe_dump(quickstart))

    # Day 2: `helm upgrade` while runs are active; the Deployment replaces the operator (Recreate),
    # and the new one carries on from the Jobs that exist.
    started = wait_until(
        lambda: jobs(cluster, watched) if len(jobs(cluster, watched)) == 2 else None,
        timeout=120,
        what="the first two run Jobs (parallelism 2)",
    )
    wait_until(
        lambda: event_counts(cluster, watched, "quickstart").get("RunStarted") == 2,
        timeout=60,
        what="their RunStarted Events",
    )
    upgraded_image = "quanteval-worker:upgraded"
    release.helm(
        "upgrade", release.name, str(CHART), "--reuse-values",
        f"--set=worker.image={upgraded_image}", "--timeout=2m",
    )  # fmt: skip
    second = wait_until(
        lambda: operator_pod(not_uid=first["metadata"]["uid"]),
        timeout=120,
        what="the upgraded operator's pod to run",
    )
    logs.append(cluster.pod_dir(release.namespace, second["metadata"]["name"]) / "log")
    healthy()

    body = wait_finished(cluster, watched, "quickstart", timeout=900)
    assert condition(body, "Succeeded")["status"] == "True", logs[-1].read_text()[-4000:]
    status = body["status"]
    runs = runs_by_id(body)
    assert set(runs) == {f"smollm2-135m-{p}" for p in ("fp32", "bf16", "int8", "nf4", "native")}
    assert all(r["attempts"] == 1 for r in runs.values()), {
        i: (r["attempts"], r.get("reason")) for i, r in runs.items()
    }
    fp32 = runs["smollm2-135m-fp32"]["metrics"]["weightsBytes"]
    assert runs["smollm2-135m-nf4"]["metrics"]["weightsBytes"] < 0.35 * fp32
    comparisons = {c["id"] for c in status["summary"]["comparisons"]}
    assert comparisons == {f"smollm2-135m-{p}" for p in ("bf16", "int8", "nf4", "native")}
    # The report Job's verdicts reached the status through its termination message: two
    # samples a run are too few for any verdict, and the status says so rather than guess.
    verdicts = {c["id"]: c.get("verdict", "") for c in status["summary"]["comparisons"]}
    assert all(v.startswith("cannot decide") for v in verdicts.values()), verdicts
    # GitOps: what the operator wrote is status only; the spec is the user's (kubectl's) alone.
    fields = cluster.kubectl(
        "get", "quanteval", "quickstart", "-o", "json", "--show-managed-fields", namespace=watched
    ).stdout
    managed = json.loads(fields)["metadata"]["managedFields"]
    writers = {(m["manager"], m.get("subresource", "")) for m in managed}
    assert {sub for manager, sub in writers if not manager.startswith("kubectl")} == {"status"}
    assert body["metadata"].get("annotations", {}).keys() <= {
        "kubectl.kubernetes.io/last-applied-configuration"
    }
    run_jobs = jobs(cluster, watched)
    assert len(run_jobs) == 5  # no Job twice across the upgrade
    assert len({j["metadata"]["labels"]["quanteval.io/run"] for j in run_jobs}) == 5
    (report_job,) = jobs(cluster, watched, "report")
    assert _image(report_job) == upgraded_image  # the new operator's settings
    assert {_image(j) for j in started} == {"quanteval-worker:test"}

    # What the user reads: the printer columns, and the story in `kubectl describe`.
    header, row = cluster.kubectl("get", "quantevals", namespace=watched).stdout.splitlines()
    assert header.split() == ["NAME", "STATUS", "PROGRESS", "BEST", "AGE"]
    best = status["summary"]["bestRun"]
    assert row.split()[:4] == ["quickstart", "AllRunsSucceeded", "5/5", best]

    def the_end_is_told() -> str | None:
        text = cluster.kubectl("describe", "quanteval", "quickstart", namespace=watched).stdout
        events = text.split("\nEvents:", 1)[-1]
        return events if f"best run {best}" in events else None

    events = wait_until(the_end_is_told, timeout=60, what="the Succeeded Event")
    for reason in ("RunStarted", "RunSucceeded", "ReportStarted", "ReportWritten", "Succeeded"):
        assert reason in events, events
    assert "macro-F1" in events and "peak memory" in events, events
    assert f"report at {status['summary']['reportUri']}" in events, events
    assert "Warning" not in events, events
    counts = event_counts(cluster, watched, "quickstart")
    assert counts == {
        "RunStarted": 5,
        "RunSucceeded": 5,
        "ReportStarted": 1,
        "ReportWritten": 1,
        "Succeeded": 1,
    }, counts  # each told once, across the operator's replacement

    # Prometheus metrics (of the operator now running), and structured (JSON) logs of both.
    scraped = _http_get(f"http://127.0.0.1:{metrics}/metrics")
    assert scraped is not None and scraped[0] == 200
    assert 'quanteval_jobs_created_total{kind="report"} 1.0' in scraped[1]
    assert 'quanteval_runs{state="Succeeded"} 5.0' in scraped[1]
    lines = [line for log in logs for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    created = [r for r in records if "created=True" in r["message"]]
    assert len(created) == 6, created  # five run Jobs and the report's, by one or the other
    assert not [r for r in records if r.get("severity") == "error"], records
    assert not [r for r in records if r["message"].startswith("Handler ")], records  # no chatter

    # The chart's tenancy values: an image or a Secret they do not allow is refused, naming both
    # the field and the value that refuses it, and nothing runs.
    refused = {
        "evil-image": ({"workerImage": "evil.example.com/miner:1"}, "spec.workerImage",
                       "tenancy.allowedWorkerImages"),
        "evil-secret": ({"output": {"s3": output | {"secretRef": {"name": "prod-db"}}}},
                        "spec.output.s3.secretRef.name", "tenancy.allowedSecrets"),
    }  # fmt: skip
    for name, (spec, _, _) in refused.items():
        asked = quickstart | {"metadata": {"name": name}, "spec": quickstart["spec"] | spec}
        cluster.kubectl("apply", "-f", "-", namespace=watched, input=yaml.safe_dump(asked))
    for name, (_, field, setting) in refused.items():

        def invalid(name: str = name) -> JSON | None:
            found = condition(get_eval(cluster, watched, name), "Valid")
            return found if found.get("status") == "False" else None

        valid = wait_until(invalid, timeout=60, what=f"{name} to be refused")
        assert field in valid["message"] and setting in valid["message"], valid
        assert len(jobs(cluster, watched)) == 5, f"{name} got a Job"  # the quickstart's only
        cluster.kubectl("delete", "quanteval", name, namespace=watched)

    # Namespaces scope: the QuantEval in the namespace it was not given is never touched.
    assert "status" not in get_eval(cluster, unwatched, "ignored")
    assert not cluster.kubectl("get", "jobs", "-o", "name", namespace=unwatched).stdout.strip()
    cluster.kubectl("delete", "quanteval", "ignored", namespace=unwatched)

    # Uninstalling the operator keeps the evaluations and their results.
    release.uninstall()
    _nothing_left(cluster, release, [release.namespace, watched])
    kept = get_eval(cluster, watched, "quickstart")
    assert condition(kept, "Succeeded")["status"] == "True"
    storage = S3Storage(status["summary"]["reportUri"].rsplit("/", 1)[0], s3_server.endpoint)
    storage._client = s3_server.client()
    assert "<img" in (storage.read_text("report.html") or "")
