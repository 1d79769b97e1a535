"""A test-only stand-in for the kubelet: runs pods' first container as a local process group.

There is no container runtime on the test machines, so this agent registers a Node (capacity cpu
1000, memory 4Ti, pods 1000, nvidia.com/gpu 1000), keeps its Lease in ``kube-node-lease``
renewed, and for each pod bound to it runs the first container's ``command`` + ``args`` (with
``$(VAR)`` expansion) as a process group of its own, reporting status as a kubelet would:
Pending -> Running -> Succeeded/Failed with the process's own exit code.

The process's environment is built only from the pod spec (``env``, ``envFrom``, ``valueFrom``
secret/configMap/field/resource references), plus ``PATH`` (the agent's own), ``HOME`` (a per-pod
directory) and ``QUANTEVAL_TERMINATION_LOG`` (the per-pod file standing in for the container's
``terminationMessagePath``). Unless ``automountServiceAccountToken`` is false, the pod's
ServiceAccount token (a TokenRequest bound to the pod, as the kubelet's) comes as a kubeconfig in
``$KUBECONFIG``: without a mount namespace it cannot sit at /var/run/secrets/kubernetes.io/, and
client libraries fall back to $KUBECONFIG where no in-cluster environment is set. Volumes are
per-pod directories and nothing else. Per pod, under
``<state>/pods/<namespace>_<name>/``: ``log`` (stdout+stderr), ``termination-log``, ``pid``,
``uid``, ``home/``, ``volumes/<name>/`` and ``serviceaccount/kubeconfig``.

Not supported (on purpose): init/sidecar containers (only the first container runs), probes,
images (the image is ignored), ``kubectl logs``/``exec``, mounting volumes at their mountPath.

Run by :class:`devcluster.controlplane.Cluster`; by hand::

    python -m devcluster.node --kubeconfig K --state DIR [--node-name qe-node-1]
        [--register-with-taints key=value:Effect,...]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from urllib.parse import quote

import yaml

from devcluster.nodeapi import JSON, Api, ApiError, micro_timestamp, timestamp
from devcluster.pods import (
    NODE_CAPACITY,
    POD_IP,
    ConfigError,
    Run,
    build_env,
    expand,
)
from quanteval.api.termination import TERMINATION_LOG_ENV

DEFAULT_NODE_NAME = "qe-node-1"
NODE_LABEL = "quanteval.io/node-agent"

_TOKEN_SECONDS = 6 * 3600  # the ServiceAccount token a pod gets (not refreshed: tests are short)
_RESYNC_S = 1.0  # full relist of the node's pods (also the retry period for config errors)
_HEARTBEAT_S = 10.0  # Lease renewal and node status heartbeat
_LEASE_DURATION_S = 40
_MAX_BACKOFF_S = 10.0  # restart backoff cap (restartPolicy OnFailure/Always)
_SHUTDOWN_GRACE_S = 5.0
_SMP = "application/strategic-merge-patch+json"
_MERGE = "application/merge-patch+json"

log = logging.getLogger("node-agent")


class NodeAgent:
    def __init__(
        self, kubeconfig: str, state_dir: Path, node_name: str, taints: list[JSON] | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.node_name = node_name
        self.taints = taints or []  # the Node's at registration, as the kubelet's flag of the name
        self.pods_dir = state_dir / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.api = Api(kubeconfig)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self._runs: dict[str, Run] = {}
        self._proc_lock = threading.Lock()  # reaping vs. signalling a process group
        self._registered_at = timestamp()
        self._path = os.environ.get("PATH", os.defpath)
        self._version = ""

    # -- node and lease --------------------------------------------------------------------

    def _node_status(self, version: str) -> JSON:
        now = timestamp()
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID"),
            ("Ready", "True", "KubeletReady"),
        ]
        return {
            "capacity": NODE_CAPACITY,
            "allocatable": NODE_CAPACITY,
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": "quanteval node agent",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": self._registered_at,
                }
                for t, s, r in conditions
            ],
            "addresses": [
                {"type": "InternalIP", "address": POD_IP},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": "",
                "containerRuntimeVersion": "quanteval-node-agent://1",
                "kernelVersion": os.uname().release,
                "kubeProxyVersion": "",
                "kubeletVersion": version,
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "quanteval node agent",
                "systemUUID": "",
            },
        }

    def register(self) -> None:
        """Create the Node (or refresh its status if it exists); retried until it works."""
        while not self.stop.is_set():
            try:
                version = str(self.api.request("GET", "/version").get("gitVersion", ""))
                node: JSON = {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": self.node_name,
                        "labels": {
                            "kubernetes.io/hostname": self.node_name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            NODE_LABEL: "true",
                        },
                    },
                    "spec": {"taints": self.taints} if self.taints else {},
                    "status": self._node_status(version),
                }
                try:
                    self.api.request("POST", "/api/v1/nodes", body=node)
                    log.info("registered node %s", self.node_name)
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                self.api.request(
                    "PATCH",
                    f"/api/v1/nodes/{self.node_name}/status",
                    body={"status": node["status"]},
                    content_type=_SMP,
                )
                self._version = version
                return
            except Exception as exc:
                log.warning("registering node %s failed (retrying): %s", self.node_name, exc)
                self.stop.wait(1.0)

    def _heartbeat_loop(self) -> None:
        api = Api(self.kubeconfig)
        while not self.stop.is_set():
            delay = _HEARTBEAT_S
            try:
                self._renew_lease(api)
                api.request(
                    "PATCH",
                    f"/api/v1/nodes/{self.node_name}/status",
                    body={"status": {"conditions": self._node_status(self._version)["conditions"]}},
                    content_type=_SMP,
                )
            except Exception as exc:
                log.warning("heartbeat failed (retrying): %s", exc)
                delay = 1.0
            self.stop.wait(delay)

    def _renew_lease(self, api: Api) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": _LEASE_DURATION_S,
            "renewTime": micro_timestamp(),
        }
        if api.get_or_none(path) is not None:
            api.request("PATCH", path, body={"spec": spec}, content_type=_MERGE)
            return
        node = api.request("GET", f"/api/v1/nodes/{self.node_name}")
        lease: JSON = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.node_name,
                "namespace": "kube-node-lease",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": self.node_name,
                        "uid": node["metadata"]["uid"],
                    }
                ],
            },
            "spec": spec,
        }
        api.request("POST", path.rsplit("/", 1)[0], body=lease)

    def _watch_loop(self) -> None:
        """Wake the reconcile loop on every change to the node's pods."""
        api = Api(self.kubeconfig)
        query = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        while not self.stop.is_set():
            try:
                for _event in api.watch("/api/v1/pods", query, timeout_s=300):
                    self.wake.set()
                    if self.stop.is_set():
                        return
            except Exception as exc:
                log.warning("pod watch failed (retrying): %s", exc)
                self.stop.wait(1.0)

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> None:
        _become_subreaper()
        self.register()
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._watch_loop, name="watch", daemon=True).start()
        try:
            while not self.stop.is_set():
                self.wake.wait(_RESYNC_S)
                self.wake.clear()
                if self.stop.is_set():
                    break
                self._sync_all()
        finally:
            self._shutdown()

    def _sync_all(self) -> None:
        try:
            pods = self.api.request(
                "GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={self.node_name}"}
            )
        except Exception as exc:
            log.warning("listing pods failed (retrying): %s", exc)
            return
        seen: set[str] = set()
        for pod in pods.get("items", []):
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            try:
                self._sync(pod)
            except Exception:
                ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
                log.exception("syncing pod %s/%s failed (retrying)", ns, name)
        for uid in list(self._runs):
            if uid not in seen:  # gone from the API (e.g. force-deleted)
                run = self._runs[uid]
                if run.running:
                    self._signal(run, signal.SIGKILL)
                else:
                    self._runs.pop(uid)
        self._reap_orphans()

    def _reap_orphans(self) -> None:
        """Reap pods' orphaned descendants (reparented to this subreaper) once they exit."""
        tracked = {run.proc.pid for run in self._runs.values() if run.proc is not None}
        me = str(os.getpid())
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in tracked:
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and fields[1] == me:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(entry.name), os.WNOHANG)

    def _sync(self, pod: JSON) -> None:
        meta, status = pod["metadata"], pod.get("status", {})
        run = self._runs.get(meta["uid"])
        if meta.get("deletionTimestamp"):
            self._terminate(pod, run)
            return
        if run is None:
            if status.get("phase") in ("Succeeded", "Failed"):
                return  # finished before this agent started
            run = self._new_run(pod)
            if status.get("phase") == "Running":  # started by an earlier agent: process lost
                run.kill_orphan()
                run.terminal = (
                    "Failed",
                    run.terminated(137, "Error", "the node agent restarted; process lost"),
                )
        if run.terminal is None:
            self._advance(pod, run)
        self._report(pod, run)  # restarts after a backoff happen on later resyncs

    def _new_run(self, pod: JSON) -> Run:
        meta = pod["metadata"]
        pod_dir = self.pods_dir / f"{meta['namespace']}_{meta['name']}"
        uid_file = pod_dir / "uid"
        if pod_dir.exists() and (not uid_file.exists() or uid_file.read_text() != meta["uid"]):
            shutil.rmtree(pod_dir, ignore_errors=True)  # an earlier pod with the same name
        (pod_dir / "home").mkdir(parents=True, exist_ok=True)
        uid_file.write_text(meta["uid"])
        for volume in pod["spec"].get("volumes") or []:
            (pod_dir / "volumes" / volume["name"]).mkdir(parents=True, exist_ok=True)
        run = Run(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"], dir=pod_dir)
        self._runs[run.uid] = run
        return run

    def _advance(self, pod: JSON, run: Run) -> None:
        """Start, watch and (per restartPolicy) restart the first container."""
        if run.running:
            return
        policy = pod["spec"].get("restartPolicy", "Always")
        if run.proc is not None:  # it exited
            code = run.proc.returncode
            assert code is not None
            code = 128 - code if code < 0 else code
            message = run.termination_message(pod, code)
            state = run.terminated(code, "Completed" if code == 0 else "Error", message)
            run.proc = None
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                backoff = min(_MAX_BACKOFF_S, 2.0**run.restart_count)
                run.restart_count += 1
                run.last_terminated = state
                run.next_start = time.monotonic() + backoff
                run.waiting = ("CrashLoopBackOff", f"back-off {backoff:.0f}s restarting container")
            else:
                run.terminal = ("Succeeded" if code == 0 else "Failed", state)
                return
        if time.monotonic() < run.next_start:
            return
        container = pod["spec"]["containers"][0]
        if not container.get("command"):
            message = (
                f"container {container['name']!r} has no command: the quanteval node agent runs "
                "command + args as a local process and cannot run an image's entrypoint"
            )
            run.pod_reason = ("NoCommand", message)
            run.terminal = ("Failed", run.terminated(128, "StartError", message))
            return
        try:
            env = build_env(self.api, pod, container) | self._service_account_env(pod, run)
        except ConfigError as exc:
            run.waiting = ("CreateContainerConfigError", str(exc))
            return
        self._start(pod, run, container, env)

    def _service_account_env(self, pod: JSON, run: Run) -> dict[str, str]:
        """$KUBECONFIG with a token of the pod's ServiceAccount bound to the pod, or nothing."""
        spec = pod["spec"]
        if spec.get("automountServiceAccountToken") is False:
            return {}
        account = spec.get("serviceAccountName") or "default"
        request: JSON = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": _TOKEN_SECONDS,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": run.name,
                                   "uid": run.uid},
            },
        }  # fmt: skip
        path = (
            f"/api/v1/namespaces/{quote(run.namespace, safe='')}"
            f"/serviceaccounts/{quote(account, safe='')}/token"
        )
        try:
            token = str(self.api.request("POST", path, body=request)["status"]["token"])
        except ApiError as exc:
            raise ConfigError(f"serviceaccount {run.namespace}/{account}: {exc}") from exc
        config = yaml.safe_load(Path(self.kubeconfig).read_text())
        config["users"] = [{"name": account, "user": {"token": token}}]
        for context in config["contexts"]:
            context["context"]["user"] = account
        target = run.dir / "serviceaccount" / "kubeconfig"
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(config))
        target.chmod(0o600)
        return {"KUBECONFIG": str(target)}

    def _start(self, pod: JSON, run: Run, container: JSON, spec_env: dict[str, str]) -> None:
        termination_log = run.dir / "termination-log"
        termination_log.write_bytes(b"")
        env = {"PATH": self._path, "HOME": str(run.dir / "home")}
        env.update(spec_env)
        env[TERMINATION_LOG_ENV] = str(termination_log)
        argv = [expand(str(a), env) for a in [*container["command"], *container.get("args", [])]]
        run.waiting = None
        run.started_at = timestamp()
        try:
            with (run.dir / "log").open("ab") as out:
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=run.dir / "home",
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            message = f"failed to start {argv[0]!r}: {exc}"
            run.terminal = ("Failed", run.terminated(128, "StartError", message))
            return
        run.proc = proc
        (run.dir / "pid").write_text(f"{proc.pid}\n")
        log.info("pod %s/%s: started pid %d: %s", run.namespace, run.name, proc.pid, argv)
        threading.Thread(target=self._reap, args=(run, proc), daemon=True).start()

    def _reap(self, run: Run, proc: subprocess.Popen[bytes]) -> None:
        # Wait without reaping, kill what is left of the group while the leader's pid still
        # pins the group id (so it cannot be reused), then reap.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        with self._proc_lock:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.info("pod %s/%s: pid %d exited %s", run.namespace, run.name, proc.pid, proc.returncode)
        self.wake.set()

    def _signal(self, run: Run, sig: signal.Signals) -> None:
        with self._proc_lock:
            if run.proc is not None and run.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(run.proc.pid, sig)

    def _terminate(self, pod: JSON, run: Run | None) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        if run is not None and run.running:
            if run.term_deadline is None:
                grace = meta.get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                log.info("pod %s/%s: deleting; SIGTERM (grace %ss)", run.namespace, run.name, grace)
                self._signal(run, signal.SIGTERM)
                run.term_deadline = time.monotonic() + float(grace)
            elif time.monotonic() >= run.term_deadline:
                self._signal(run, signal.SIGKILL)
            return
        if run is not None and run.deleted:
            return
        if run is not None and run.proc is not None and run.terminal is None:
            code = run.proc.returncode
            assert code is not None
            code = 128 - code if code < 0 else code
            message = run.termination_message(pod, code)
            state = run.terminated(code, "Completed" if code == 0 else "Error", message)
            run.terminal = ("Succeeded" if code == 0 else "Failed", state)
            with contextlib.suppress(ApiError):
                self._report(pod, run)
        ns, name = meta["namespace"], meta["name"]
        path = f"/api/v1/namespaces/{quote(ns, safe='')}/pods/{quote(name, safe='')}"
        body: JSON = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }
        try:
            self.api.request("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise
        log.info("pod %s/%s: deleted", ns, name)
        if run is None:
            run = self._new_run(pod)
        run.deleted = True

    # -- status ----------------------------------------------------------------------------

    def _report(self, pod: JSON, run: Run) -> None:
        container = pod["spec"]["containers"][0]
        cstatus: JSON = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "restartCount": run.restart_count,
            "lastState": {"terminated": run.last_terminated} if run.last_terminated else {},
        }
        status: JSON = {"podIP": POD_IP, "podIPs": [{"ip": POD_IP}], "hostIP": POD_IP}
        status["hostIPs"] = [{"ip": POD_IP}]
        status["startTime"] = run.start_time
        if run.terminal is not None:
            phase, terminated = run.terminal
            cstatus.update(ready=False, started=False, state={"terminated": terminated})
            if "containerID" in terminated:
                cstatus["containerID"] = terminated["containerID"]
            ready = False
            reason = "PodCompleted"
        elif run.running:
            assert run.proc is not None
            phase = "Running"
            state = {"running": {"startedAt": run.started_at}}
            cstatus.update(ready=True, started=True, state=state)
            cstatus["containerID"] = f"qe://{run.proc.pid}"
            ready, reason = True, ""
        else:
            phase = "Running" if run.restart_count else "Pending"
            waiting_reason, message = run.waiting or ("ContainerCreating", "")
            waiting: JSON = {"reason": waiting_reason}
            if message:
                waiting["message"] = message
            cstatus.update(ready=False, started=False, state={"waiting": waiting})
            ready, reason = False, "ContainersNotReady"
        status["phase"] = phase
        status["containerStatuses"] = [cstatus]
        status["conditions"] = [
            run.condition("PodReadyToStartContainers", True),
            run.condition("Initialized", True),
            run.condition("ContainersReady", ready, reason),
            run.condition("Ready", ready, reason),
        ]
        if run.pod_reason is not None:
            status["reason"], status["message"] = run.pod_reason
        patch = json.dumps({"status": status}, sort_keys=True)
        if patch == run.last_patch:
            return
        ns, name = quote(run.namespace, safe=""), quote(run.name, safe="")
        try:
            self.api.request(
                "PATCH",
                f"/api/v1/namespaces/{ns}/pods/{name}/status",
                body={"status": status},
                content_type=_SMP,
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
        run.last_patch = patch

    # -- shutdown --------------------------------------------------------------------------

    def _shutdown(self) -> None:
        live = [run for run in self._runs.values() if run.running]
        for run in live:
            self._signal(run, signal.SIGTERM)
        deadline = time.monotonic() + _SHUTDOWN_GRACE_S
        while time.monotonic() < deadline and any(run.running for run in live):
            time.sleep(0.05)  # the reaper threads record the exits
        for run in live:
            self._signal(run, signal.SIGKILL)


def _become_subreaper() -> None:
    """Adopt pods' orphaned descendants (as a container runtime's shim does), so that they are
    reaped even where PID 1 does not reap."""
    pr_set_child_subreaper = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        log.warning("cannot become a child subreaper: %s", exc)


def parse_taints(text: str) -> list[JSON]:
    """``key=value:Effect,key:Effect``, as the kubelet's ``--register-with-taints``."""
    taints: list[JSON] = []
    for item in filter(None, text.split(",")):
        key_value, sep, effect = item.partition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise argparse.ArgumentTypeError(f"taint {item!r}: want key[=value]:Effect")
        key, _, value = key_value.partition("=")
        taints.append({"key": key, "effect": effect} | ({"value": value} if value else {}))
    return taints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.node", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state", required=True, type=Path, help="pods go to STATE/pods/")
    parser.add_argument("--node-name", default=DEFAULT_NODE_NAME)
    parser.add_argument("--register-with-taints", type=parse_taints, default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    agent = NodeAgent(args.kubeconfig, args.state, args.node_name, args.register_with_taints)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        agent.stop.set()
        agent.wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
