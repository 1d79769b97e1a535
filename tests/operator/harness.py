"""The operator under test: the CRD and the chart's RBAC installed, `quanteval-operator` running
as a process with a token of the chart's ServiceAccount (so a missing permission fails tests), and
workers writing to a real MinIO.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from devcluster.controlplane import Cluster
from devcluster.helm import helm
from devcluster.minio import MinioServer
from devcluster.ports import free_port
from devcluster.waiting import wait_until
from tests.builders import make_manifest

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "quantevals.quanteval.io.yaml"
CHART = ROOT / "charts" / "quanteval-operator"
OPERATOR_NAMESPACE = "quanteval-system"
RELEASE = "qe"
BUCKET = "quanteval-e2e"
S3_SECRET = "quanteval-s3"
BIN = Path(sys.executable).parent
# vllm runs' worker: the test node agent runs a container's command from the test environment,
# and vLLM lives in .venv-vllm (the chart's worker.commands.vllm).
VLLM_WORKER = ROOT / ".venv-vllm" / "bin" / "quanteval-worker"


def install_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(CRD))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/quantevals.quanteval.io",
    )


def install_rbac(cluster: Cluster) -> str:
    """The chart's ServiceAccount and RBAC (rendered by the real helm); returns the SA's name."""
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    rendered = helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
    ).stdout
    cluster.kubectl("apply", "-f", "-", input=rendered)
    accounts = [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "ServiceAccount"]
    return str(accounts[0]["metadata"]["name"])


def service_account_kubeconfig(cluster: Cluster, account: str, path: Path) -> Path:
    token = cluster.kubectl(
        "create", "token", account, "--duration=6h", namespace=OPERATOR_NAMESPACE
    ).stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


class OperatorProcess:
    """`quanteval-operator` as its own process; kill it at any moment, start it again."""

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        settings: dict[str, str],
        args: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.settings = settings
        self.args = args  # more command-line flags
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBE"))}
        return (
            keep
            | {
                "KUBECONFIG": str(self.kubeconfig),
                "QUANTEVAL_WORKER_IMAGE": "quanteval-worker:test",
                "QUANTEVAL_WORKER_COMMAND": json.dumps([str(BIN / "quanteval-worker")]),
                "QUANTEVAL_WORKER_IMAGES": json.dumps({"vllm": "quanteval-worker-vllm:test"}),
                "QUANTEVAL_WORKER_COMMANDS": json.dumps({"vllm": [str(VLLM_WORKER)]}),
                "QUANTEVAL_REPORT_COMMAND": json.dumps([str(BIN / "quanteval"), "report"]),
                "QUANTEVAL_S3_BUCKET": BUCKET,
                "QUANTEVAL_S3_SECRET_NAME": S3_SECRET,
                "QUANTEVAL_GPU_MEMORY_GIB": "80",
            }
            | self.settings
        )

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(BIN / "quanteval-operator"),
                "--liveness",
                f"http://127.0.0.1:{free_port()}/healthz",
                "--metrics-port",
                str(free_port()),
                *self.args,
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


def s3_secret(s3: MinioServer, namespace: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": S3_SECRET, "namespace": namespace},
            "stringData": {
                "AWS_ACCESS_KEY_ID": s3.access_key,
                "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            },
        }
    )


def get_eval(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "quanteval", name, "-o", "json", namespace=namespace).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in body.get("status", {}).get("conditions", []):
        if item.get("type") == type_:
            return dict(item)
    return {}


def runs_by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A QuantEval's status.runs by run id."""
    return {r["id"]: r for r in body["status"]["runs"]}


def event_counts(cluster: Cluster, namespace: str, name: str) -> dict[str, int]:
    """How many Events of each reason the QuantEval `name` has."""
    items = json.loads(
        cluster.kubectl(
            "get", "events", "-o", "json",
            f"--field-selector=involvedObject.kind=QuantEval,involvedObject.name={name}",
            namespace=namespace,
        ).stdout
    )["items"]  # fmt: skip
    counts: dict[str, int] = {}
    for event in items:
        counts[event["reason"]] = counts.get(event["reason"], 0) + event.get("count", 1)
    return counts


def wait_finished(cluster: Cluster, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """The QuantEval once its Succeeded condition is True or False."""

    def finished() -> dict[str, Any] | None:
        body = get_eval(cluster, namespace, name)
        return body if condition(body, "Succeeded").get("status") in ("True", "False") else None

    return wait_until(finished, timeout=timeout, what=f"QuantEval {name} to finish", interval=1)


def jobs(cluster: Cluster, namespace: str, component: str = "run") -> list[dict[str, Any]]:
    """The Jobs of the runs (component=run) or the report's (component=report)."""
    selector = f"app.kubernetes.io/component={component}"
    out = cluster.kubectl("get", "jobs", "-o", "json", "-l", selector, namespace=namespace).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def max_concurrent(job_items: list[dict[str, Any]]) -> int:
    """The most Jobs that were unfinished at one time, from creation and finish timestamps."""
    edges = []
    for job in job_items:
        start = job["metadata"]["creationTimestamp"]
        status = job.get("status", {})
        finish = status.get("completionTime") or next(
            (
                c["lastTransitionTime"]
                for c in status.get("conditions", [])
                if c["type"] in ("Complete", "Failed") and c["status"] == "True"
            ),
            "9999",
        )
        edges += [(start, 1), (finish, -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # a finish sorts before a start
        running += step
        peak = max(peak, running)
    return peak


def manifest(name: str, models: list[dict[str, Any]], **spec: Any) -> str:
    """The builders' manifest as YAML, one GPU a run unless `spec` says otherwise."""
    return yaml.safe_dump(make_manifest(name, models, **({"resources": {"gpus": 1}} | spec)))
