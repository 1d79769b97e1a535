"""The operator at scale: 200 runs whose workers finish at once, parallelism 200.

On the real control plane (devcluster/controlplane.py, with API audit logging), the operator running
under its chart's ServiceAccount. Prints seconds from apply to all Jobs created and to Succeeded,
API requests per run (from the audit log, the operator's user only), the status size in bytes
with its extrapolation to 1,000 runs (the target: under 512 KiB), and the operator's peak memory
(VmHWM) with --unrelated Jobs (suspended) and pods (Pending for good) of someone else in the
cluster. Twice, side by side on one cluster: with the operator's server-side label selectors (the
API server sends only its children) and with kopf's client-side filters alone
(--client-side-selectors: every Job and pod of the cluster reaches the operator). No pass/fail.

    PYTHONPATH=. .venv/bin/python benchmarks/operator_scale.py [--models 40] [--precisions 5]
        [--unrelated 2000]
"""

import argparse
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcluster.controlplane import Cluster
from devcluster.waiting import wait_until
from quanteval.api.result import RunMetrics
from quanteval.api.states import RunState
from quanteval.api.termination import run_message
from quanteval.precisions import PRECISION_ORDER
from tests.operator.harness import (
    OPERATOR_NAMESPACE,
    OperatorProcess,
    condition,
    get_eval,
    install_crd,
    install_rbac,
    jobs,
    service_account_kubeconfig,
)

METRICS = RunMetrics(
    f1_macro=0.73456789, accuracy=0.7412345, intensity=61.23456, distinct1=0.4, distinct2=0.8,
    weights_bytes=13_476_839_424, peak_memory_bytes=14_123_456_789,
    load_peak_memory_bytes=14_000_000_000, generation_peak_memory_bytes=14_123_456_789,
    load_seconds=41.5, generation_seconds=812.25, tokens_per_second=35.123,
    latency_p50_ms=10234.5, latency_p95_ms=12987.25, generated_tokens=4480, samples=70,
)  # fmt: skip


def instant_worker() -> list[str]:
    """A worker that finishes at once with a realistic termination message."""
    message = run_message("run", RunState.SUCCEEDED, METRICS).to_text()
    return ["sh", "-c", f"printf '%s' '{message}' > \"$QUANTEVAL_TERMINATION_LOG\""]


def _resource(ref: dict[str, str]) -> str:
    sub = ref.get("subresource")
    return f"{ref.get('resource', '')}/{sub}" if sub else ref.get("resource", "")


def unrelated_objects(count: int) -> str:
    """`count` suspended Jobs and `count` pods no node takes, labelled like nothing of ours."""
    pod_spec = {
        "restartPolicy": "Never",
        "nodeSelector": {"example.com/no-such-node": "x"},
        "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
    }
    items: list[dict[str, object]] = []
    for i in range(count):
        labels = {"app": "someone-else", "batch": str(i % 10)}
        items.append({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"other-{i}", "namespace": "others", "labels": labels},
            "spec": {"suspend": True, "template": {"spec": pod_spec}},
        })  # fmt: skip
        items.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"other-{i}", "namespace": "others", "labels": labels},
            "spec": pod_spec,
        })  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def peak_memory(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for {pid}")


@dataclass
class Measured:
    selectors: str
    all_jobs: float
    done: float
    body: dict[str, Any]
    requests: int
    kinds: Counter[str]
    peak: int


def measure(
    cluster: Cluster, kubeconfig: Path, log_dir: Path, user: str, namespace: str,
    runs_of: tuple[int, int], client_side: bool,
) -> Measured:  # fmt: skip
    """One evaluation of models x precisions runs in `namespace`, by a fresh operator."""
    models, precisions = runs_of
    runs = models * precisions
    log_dir.mkdir()
    operator = OperatorProcess(
        kubeconfig,
        log_dir,
        # No S3 Secret: the instant worker and report write nothing.
        {
            "QUANTEVAL_WORKER_COMMAND": json.dumps(instant_worker()),
            "QUANTEVAL_REPORT_COMMAND": json.dumps(["sh", "-c", "exit 0"]),
            "QUANTEVAL_S3_SECRET_NAME": "",
        },
        ("--client-side-selectors",) if client_side else (),
    )
    seen = len(cluster.audit_events())
    operator.start()
    cluster.kubectl("create", "namespace", namespace)
    wait_until(
        lambda: any(e.get("user", {}).get("username") == user
                    for e in cluster.audit_events()[seen:]),
        timeout=60, what="the operator to start watching",
    )  # fmt: skip
    time.sleep(2)  # let its initial list calls settle before counting
    before = sum(1 for e in cluster.audit_events() if e["user"]["username"] == user)
    manifest = {
        "apiVersion": "quanteval.io/v1alpha1",
        "kind": "QuantEval",
        "metadata": {"name": "scale", "namespace": namespace},
        "spec": {
            "models": [
                {"name": f"model-{i:02d}", "source": f"org/model-{i:02d}", "parameters": 7e9}
                for i in range(models)
            ],
            "precisions": [p.value for p in PRECISION_ORDER[:precisions]],
            "output": {"s3": {"bucket": "scale"}},
            "parallelism": runs,
        },
    }
    started = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    wait_until(lambda: len(jobs(cluster, namespace)) >= runs, timeout=600,
               what=f"{runs} Jobs", interval=0.5)  # fmt: skip
    all_jobs = time.monotonic() - started
    body = wait_until(
        lambda: (b := get_eval(cluster, namespace, "scale"))
        and condition(b, "Succeeded").get("status") in ("True", "False") and b,
        timeout=900, what="Succeeded True or False", interval=1,
    )  # fmt: skip
    done = time.monotonic() - started
    mine = [e for e in cluster.audit_events() if e["user"]["username"] == user][before:]
    kinds = Counter(f"{e['verb']} {_resource(e.get('objectRef', {}))}" for e in mine)
    assert operator.process is not None
    peak = peak_memory(operator.process.pid)
    operator.stop()
    where = "client-side (kopf's filters)" if client_side else "server-side (labelSelector)"
    return Measured(where, all_jobs, done, body, len(mine), kinds, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--precisions", type=int, default=5)
    parser.add_argument("--unrelated", type=int, default=2000)
    args = parser.parse_args()
    runs = args.models * args.precisions
    with (
        tempfile.TemporaryDirectory(prefix="qe-scale-") as tmp,
        Cluster(Path(tmp) / "cluster", audit=True) as cluster,
    ):
        install_crd(cluster)
        account = install_rbac(cluster)
        user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{account}"
        kubeconfig = service_account_kubeconfig(cluster, account, Path(tmp) / "kubeconfig")
        if args.unrelated:
            cluster.kubectl("create", "namespace", "others")
            cluster.kubectl("apply", "--server-side", "-f", "-",
                            input=unrelated_objects(args.unrelated))  # fmt: skip
        measured = [
            measure(
                cluster,
                kubeconfig,
                Path(tmp) / f"operator-{i}",
                user,
                f"scale-{i}",
                (args.models, args.precisions),
                client_side,
            )
            for i, client_side in enumerate((False, True))
        ]
    print(f"runs: {runs} ({args.models} models x {args.precisions} precisions), parallelism {runs}")
    print(
        f"with {args.unrelated} unrelated Jobs (suspended) and {args.unrelated} unrelated pods "
        "(Pending) in the cluster; one fresh operator per row, one after the other"
    )
    for m in measured:
        status_bytes = len(json.dumps(m.body["status"], separators=(",", ":")))
        per_run = status_bytes / runs
        end = condition(m.body, "Succeeded")
        print(f"\nJob and pod label filters {m.selectors}:")
        print(f"  apply to all Jobs created: {m.all_jobs:.1f} s")
        print(
            f"  apply to Succeeded={end['status']} ({end['reason']}): {m.done:.1f} s "
            "(with the report)"
        )
        print(f"  operator API requests: {m.requests} ({m.requests / runs:.2f} per run)")
        print(
            "    by verb and resource: " + ", ".join(f"{k}: {v}" for k, v in m.kinds.most_common())
        )
        print(f"  status size: {status_bytes} bytes ({per_run:.0f} bytes per run)")
        print(
            f"  status size at 1,000 runs: {per_run * 1000 / 1024:.0f} KiB (target: under 512 KiB)"
        )
        print(f"  operator peak memory (VmHWM): {m.peak / 2**20:.0f} MiB")
    server, client = measured
    print(f"\npeak memory, client-side over server-side: {client.peak / server.peak:.2f}x")


if __name__ == "__main__":
    main()
