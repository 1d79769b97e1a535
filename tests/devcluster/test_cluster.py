"""The test cluster itself: real Jobs, garbage collection and RBAC over the node agent."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from devcluster.controlplane import Cluster
from devcluster.kubernetes import KUBERNETES_VERSION
from devcluster.node import parse_taints
from devcluster.waiting import wait_until

JSON = dict[str, Any]


def _job(name: str, command: list[str]) -> str:
    job: JSON = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{"name": "main", "image": "qe/none", "command": command}],
                }
            },
        },
    }
    return json.dumps(job)


def _pod(name: str, command: list[str], **container: Any) -> str:
    pod: JSON = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "qe-test"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "qe/none", "command": command, **container}],
        },
    }
    return json.dumps(pod)


def _get(cluster: Cluster, path: str) -> JSON | None:
    status, body = cluster.get(path)
    return body if status == 200 and isinstance(body, dict) else None


def _job_condition(cluster: Cluster, ns: str, name: str, kind: str) -> JSON | None:
    job = _get(cluster, f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")
    for cond in (job or {}).get("status", {}).get("conditions", []):
        if cond["type"] == kind and cond["status"] == "True":
            return dict(cond)
    return None


def _job_pods(cluster: Cluster, ns: str, job: str) -> list[JSON]:
    pods = _get(cluster, f"/api/v1/namespaces/{ns}/pods?labelSelector=job-name%3D{job}")
    return list((pods or {}).get("items", []))


def _pod_obj(cluster: Cluster, ns: str, name: str) -> JSON | None:
    return _get(cluster, f"/api/v1/namespaces/{ns}/pods/{name}")


def _terminated(pod: JSON) -> JSON:
    state: JSON = pod["status"]["containerStatuses"][0]["state"]
    return dict(state["terminated"])


def _finished_pod(cluster: Cluster, ns: str, name: str) -> JSON:
    def finished() -> JSON | None:
        pod = _pod_obj(cluster, ns, name)
        if pod and pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return pod
        return None

    return wait_until(finished, timeout=60, what=f"pod {ns}/{name} to finish")


def test_server_reports_pinned_version(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == KUBERNETES_VERSION


def test_job_completes_with_termination_message(cluster: Cluster, namespace: str) -> None:
    command = ["sh", "-c", "echo hello > $QUANTEVAL_TERMINATION_LOG; exit 0"]
    cluster.kubectl("apply", "-f", "-", namespace=namespace, input=_job("hello", command))
    wait_until(
        lambda: _job_condition(cluster, namespace, "hello", "Complete"),
        timeout=90,
        what="Job hello to complete",
    )
    (pod,) = _job_pods(cluster, namespace, "hello")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = _terminated(pod)
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    assert terminated["message"].strip() == "hello"


def test_job_fails_with_exit_code(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "apply", "-f", "-", namespace=namespace, input=_job("boom", ["sh", "-c", "exit 3"])
    )
    failed = wait_until(
        lambda: _job_condition(cluster, namespace, "boom", "Failed"),
        timeout=90,
        what="Job boom to fail",
    )
    assert failed["reason"] == "BackoffLimitExceeded"
    (pod,) = _job_pods(cluster, namespace, "boom")
    assert pod["status"]["phase"] == "Failed"
    terminated = _terminated(pod)
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"


def test_missing_secret_then_created(cluster: Cluster, namespace: str) -> None:
    env = [
        {
            "name": "TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "late-secret", "key": "token"}},
        }
    ]
    command = ["sh", "-c", 'printf %s "$TOKEN" > $QUANTEVAL_TERMINATION_LOG']
    cluster.kubectl("apply", "-f", "-", namespace=namespace, input=_pod("late", command, env=env))

    def config_error() -> JSON | None:
        pod = _pod_obj(cluster, namespace, "late")
        statuses = (pod or {}).get("status", {}).get("containerStatuses", [])
        waiting = statuses[0]["state"].get("waiting", {}) if statuses else {}
        return pod if waiting.get("reason") == "CreateContainerConfigError" else None

    pod = wait_until(config_error, timeout=60, what="CreateContainerConfigError")
    assert pod["status"]["phase"] == "Pending"
    assert "late-secret" in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]

    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "late-secret",
        "--from-literal=token=s3cr3t",
        namespace=namespace,
    )
    pod = _finished_pod(cluster, namespace, "late")
    assert pod["status"]["phase"] == "Succeeded"
    assert _terminated(pod)["message"] == "s3cr3t"


def test_env_comes_only_from_the_pod_spec(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "create", "configmap", "settings", "--from-literal=mode=fast", namespace=namespace
    )
    env = [
        {"name": "GREETING", "value": "hi"},
        {"name": "SHOUT", "value": "$(GREETING)!"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {
            "name": "MODE",
            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
        },
        {
            "name": "ABSENT",
            "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
        },
    ]
    env_from = [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}]
    command = ["sh", "-c", "env > $QUANTEVAL_TERMINATION_LOG"]
    manifest = _pod("envdump", command, env=env, envFrom=env_from)
    cluster.kubectl("apply", "-f", "-", namespace=namespace, input=manifest)
    pod = _finished_pod(cluster, namespace, "envdump")
    assert pod["status"]["phase"] == "Succeeded"
    lines = _terminated(pod)["message"].splitlines()
    seen = dict(line.split("=", 1) for line in lines if "=" in line)

    home = cluster.pod_dir(namespace, "envdump") / "home"
    assert seen["GREETING"] == "hi"
    assert seen["SHOUT"] == "hi!"
    assert seen["POD_NAME"] == "envdump"
    assert seen["POD_NS"] == namespace
    assert seen["MODE"] == "fast"
    assert seen["CFG_mode"] == "fast"
    assert seen["HOME"] == str(home)
    assert seen["QUANTEVAL_TERMINATION_LOG"] == str(home.parent / "termination-log")
    assert seen["PATH"]
    declared = {"GREETING", "SHOUT", "POD_NAME", "POD_NS", "MODE", "CFG_mode"}
    added = {"PATH", "HOME", "QUANTEVAL_TERMINATION_LOG", "KUBECONFIG"}  # the token's kubeconfig
    shell_own = {"PWD", "SHLVL", "_", "OLDPWD"}
    assert set(seen) - shell_own == declared | added

    # The agent's own environment does have what the pod must not inherit.
    assert cluster.agent_pid is not None
    agent_env = Path(f"/proc/{cluster.agent_pid}/environ").read_bytes().split(b"\0")
    assert any(item.startswith(b"VIRTUAL_ENV=") for item in agent_env)
    assert "VIRTUAL_ENV" not in seen
    assert seen["HOME"] != os.environ.get("HOME")


def _process_group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in the process group."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_deleting_a_job_collects_its_pods_and_kills_the_process(
    cluster: Cluster, namespace: str
) -> None:
    marker = f"qe-marker-{uuid.uuid4().hex}"
    command = ["sh", "-c", "sleep 300; echo $0", marker]
    cluster.kubectl("apply", "-f", "-", namespace=namespace, input=_job("sleeper", command))

    def running_pid() -> int | None:
        pods = _job_pods(cluster, namespace, "sleeper")
        if len(pods) == 1 and pods[0].get("status", {}).get("phase") == "Running":
            return cluster.pod_pid(namespace, pods[0]["metadata"]["name"])
        return None

    pid = wait_until(running_pid, timeout=60, what="the sleeper pod to run")
    assert _process_group_alive(pid)
    assert _processes_with(marker)

    cluster.kubectl("delete", "job", "sleeper", "--cascade=background", namespace=namespace)
    wait_until(
        lambda: not _job_pods(cluster, namespace, "sleeper"),
        timeout=60,
        what="the garbage collector to delete the Job's pods",
    )
    wait_until(
        lambda: not _process_group_alive(pid) and not _processes_with(marker),
        timeout=30,
        what="the pod's process group to be gone",
    )


def test_a_pod_gets_a_token_of_its_service_account_bound_to_it(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", namespace=namespace)
    pod = json.loads(_pod("whoami", ["sh", "-c", "exit 0"]))
    pod["spec"]["serviceAccountName"] = "reader"
    cluster.kubectl("apply", "-f", "-", namespace=namespace, input=json.dumps(pod))
    assert _finished_pod(cluster, namespace, "whoami")["status"]["phase"] == "Succeeded"
    kubeconfig = cluster.pod_dir(namespace, "whoami") / "serviceaccount" / "kubeconfig"
    review = cluster.kubectl("auth", "whoami", "-o", "json", f"--kubeconfig={kubeconfig}")
    user = json.loads(review.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:reader"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["whoami"]

    # Bound to the pod: deleting the pod revokes the token (once the server's cache knows).
    cluster.kubectl("delete", "pod", "whoami", namespace=namespace)

    def refused() -> subprocess.CompletedProcess[str] | None:
        answer = cluster.kubectl("auth", "whoami", f"--kubeconfig={kubeconfig}", check=False)
        return answer if answer.returncode != 0 else None

    revoked = wait_until(refused, timeout=60, what="the deleted pod's token to be refused")
    assert "Unauthorized" in revoked.stderr, revoked.stderr

    quiet = json.loads(_pod("no-token", ["sh", "-c", "env > $QUANTEVAL_TERMINATION_LOG"]))
    quiet["spec"]["automountServiceAccountToken"] = False
    cluster.kubectl("apply", "-f", "-", namespace=namespace, input=json.dumps(quiet))
    pod_body = _finished_pod(cluster, namespace, "no-token")
    assert "KUBECONFIG=" not in _terminated(pod_body)["message"]


def test_rbac_forbids_a_service_account_without_permissions(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", namespace=namespace)
    token = cluster.kubectl("create", "token", "nobody", namespace=namespace).stdout.strip()
    can_i = cluster.kubectl(
        "auth", "can-i", "list", "pods", f"--token={token}", namespace=namespace, check=False
    )
    assert can_i.stdout.strip() == "no"
    listing = cluster.kubectl("get", "pods", f"--token={token}", namespace=namespace, check=False)
    assert listing.returncode != 0
    assert "forbidden" in listing.stderr.lower()
    assert f"system:serviceaccount:{namespace}:nobody" in listing.stderr
    admin = cluster.kubectl("auth", "can-i", "list", "pods", namespace=namespace)
    assert admin.stdout.strip() == "yes"


def test_node_taints_are_read_as_the_kubelets_register_with_taints_flag() -> None:
    assert parse_taints("a.io/x=y:NoSchedule,b:NoExecute") == [
        {"key": "a.io/x", "value": "y", "effect": "NoSchedule"},
        {"key": "b", "effect": "NoExecute"},
    ]
    assert parse_taints("") == []
    with pytest.raises(argparse.ArgumentTypeError, match="want key"):
        parse_taints("a=b:Sometimes")
