"""A real single-node Kubernetes control plane on 127.0.0.1, for operator tests and `make cluster`.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (:mod:`devcluster.kubernetes`)
and the node agent standing in for the kubelet (:mod:`devcluster.node`), each a process of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from devcluster.build import log
from devcluster.kubernetes import (
    KUBERNETES_VERSION,
    ensure_kube_binaries,
    etcd_binary,
    kubectl_binary,
)
from devcluster.pki import token_kubeconfig, write_pki
from devcluster.ports import free_port
from quanteval.api.termination import TERMINATION_LOG_ENV

_REPO_ROOT = Path(__file__).resolve().parents[1]
_SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_SERVICE_CIDR = "10.0.0.0/24"
_STATE_FILE = "cluster.json"
# Everything start() creates in the state directory (and wipes before starting afresh).
_AUDIT_LOG = "audit.log"
_AUDIT_POLICY = "audit-policy.yaml"
_STATE_ENTRIES = (
    "pki", "etcd", "logs", "pods", "nodes", "kubectl-cache", "kubeconfig", _AUDIT_LOG,
    _AUDIT_POLICY, _STATE_FILE,
)  # fmt: skip
# Every request at level Metadata (who, what, when, the response code; no bodies), once per stage
# but RequestReceived: one ResponseComplete event per request (plus ResponseStarted for watches).
_AUDIT_POLICY_DOC = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}
# Started in this order, stopped in the reverse one (the agent first: it stops the pods).
_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node-agent")


class KubectlError(subprocess.CalledProcessError):
    """kubectl failed; the message carries its output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def _proc_start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _log(message: str) -> None:
    log("kube", message)


@contextlib.contextmanager
def _state_lock(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Cluster:
    """A single-node Kubernetes cluster on 127.0.0.1: etcd, the control plane and the node agent.

    Every component runs in its own session (``setsid``), logs to ``<state>/logs/<name>.log``, and
    is recorded (pid and start time) in ``<state>/cluster.json``, so :meth:`stop` works from
    another process too (:meth:`from_state`). The admin kubeconfig (a static token in group
    ``system:masters``) is ``<state>/kubeconfig``; pods' directories are
    ``<state>/pods/<namespace>_<name>/`` (``log``, ``termination-log``, ``pid``).

    With ``audit=True`` the API server logs every request at level Metadata as JSON lines in
    ``<state>/audit.log`` (:meth:`audit_events`).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        node_name: str = "qe-node-1",
        startup_timeout_s: float = 180.0,
        stop_timeout_s: float = 15.0,
        audit: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.node_name = node_name
        self.audit = audit
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.server = ""
        self.token = ""
        self._records: dict[str, dict[str, int]] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        # How each component was started (this process's only): what restart() starts again.
        self._launches: dict[str, tuple[list[str], dict[str, str] | None, Path | None]] = {}

    # -- paths and state -----------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "pods"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / _AUDIT_LOG

    @property
    def agent_pid(self) -> int | None:
        record = self._records.get("node-agent")
        return None if record is None else record["pid"]

    def pod_dir(self, namespace: str, name: str) -> Path:
        """The node agent's directory for a pod (``log``, ``termination-log``, ``pid``...)."""
        return self.pods_dir / f"{namespace}_{name}"

    def pod_pid(self, namespace: str, name: str) -> int | None:
        """The pid of the pod's process (its process group id too), once the agent started it."""
        try:
            return int((self.pod_dir(namespace, name) / "pid").read_text())
        except (OSError, ValueError):
            return None

    def _save(self) -> None:
        state = {
            "version": KUBERNETES_VERSION,
            "server": self.server,
            "token": self.token,
            "node": self.node_name,
            "audit": self.audit,
            "processes": self._records,
        }
        tmp = self.state_dir / f".{_STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_dir / _STATE_FILE)

    @classmethod
    def from_state(cls, state_dir: Path) -> Cluster | None:
        """The cluster recorded in ``state_dir`` (running or not), or None if there is none."""
        try:
            state = json.loads((Path(state_dir) / _STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        cluster = cls(
            state_dir,
            node_name=str(state.get("node", "qe-node-1")),
            audit=bool(state.get("audit", False)),
        )
        cluster.server = str(state.get("server", ""))
        cluster.token = str(state.get("token", ""))
        cluster._records = {
            name: {"pid": int(r["pid"]), "start": int(r["start"])}
            for name, r in dict(state.get("processes", {})).items()
        }
        return cluster

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything and return once the API, the default ServiceAccount and the node
        are ready. The state directory's previous contents (see ``_STATE_ENTRIES``) are wiped."""
        if self._records:
            raise RuntimeError("Cluster already started")
        bin_dir = ensure_kube_binaries()
        etcd = etcd_binary()
        start = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for entry in _STATE_ENTRIES:
            path = self.state_dir / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        self.logs_dir.mkdir()
        self.pods_dir.mkdir()
        try:
            self._start_all(bin_dir, etcd)
        except BaseException:
            self.stop()
            raise
        _log(f"cluster ready in {time.monotonic() - start:.1f}s: {self.server} ({self.state_dir})")

    def _start_all(self, bin_dir: Path, etcd: Path) -> None:
        pki = self.state_dir / "pki"
        write_pki(pki)
        ca_pem = self.ca_file.read_bytes()
        self.token = secrets.token_hex(24)
        cm_token, sched_token = secrets.token_hex(24), secrets.token_hex(24)
        (pki / "tokens.csv").write_text(
            f'{self.token},admin,uid-admin,"system:masters"\n'
            f"{cm_token},system:kube-controller-manager,uid-kube-controller-manager\n"
            f"{sched_token},system:kube-scheduler,uid-kube-scheduler\n"
        )
        (pki / "tokens.csv").chmod(0o600)

        client_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        self._spawn(
            "etcd",
            [
                str(etcd),
                "--name=qe",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=qe=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",  # a throwaway test store: speed over durability
                # This etcd (3.5.1) cannot answer the API server's progress requests, so a watch
                # without a resourceVersion waits for the watch cache to catch up with etcd,
                # which without these notifications happens only at the next write.
                "--experimental-watch-progress-notify-interval=500ms",
                "--log-level=warn",
            ],
            env={k: v for k, v in os.environ.items() if not k.startswith("ETCD_")},
        )
        self._wait("etcd health", lambda: self._etcd_healthy(etcd_url))

        api_port = free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self.kubeconfig.write_text(token_kubeconfig(self.server, ca_pem, "admin", self.token))
        self.kubeconfig.chmod(0o600)
        for name, user, token in (
            ("controller-manager", "system:kube-controller-manager", cm_token),
            ("scheduler", "system:kube-scheduler", sched_token),
        ):
            path = pki / f"{name}.kubeconfig"
            path.write_text(token_kubeconfig(self.server, ca_pem, user, token))
            path.chmod(0o600)
        self._save()
        audit_flags: list[str] = []
        if self.audit:
            policy = self.state_dir / _AUDIT_POLICY
            policy.write_text(yaml.safe_dump(_AUDIT_POLICY_DOC, sort_keys=False))
            audit_flags = [
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                # 0 would mean the default 100 MB: rotate only at 1 TB, one file to read.
                "--audit-log-maxsize=1000000",
                "--audit-log-mode=blocking",  # written before the response (the default)
            ]
        self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca_file}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={_SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={_SERVICE_CIDR}",
                # The `kubernetes` Endpoints may not hold a loopback address: reconcile nothing.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                *audit_flags,
            ],
        )
        self._wait("kube-apiserver /readyz", lambda: self.get("/readyz")[0] == 200)

        self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={pki / 'controller-manager.kubeconfig'}",
                "--secure-port=0",
                "--leader-elect=false",
                # The defaults, naming the ones the tests and the operator rely on.
                "--controllers=*,job-controller,garbage-collector-controller,"
                "namespace-controller,serviceaccount-controller,serviceaccount-token-controller,"
                "ttl-after-finished-controller,node-lifecycle-controller",
                f"--root-ca-file={self.ca_file}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={self.ca_file}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={_SERVICE_CIDR}",
                "--node-monitor-period=1s",
                "--profiling=false",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                f"--kubeconfig={pki / 'scheduler.kubeconfig'}",
                "--secure-port=0",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        self._spawn_node_agent("node-agent", self.node_name, self.state_dir)
        self._wait(
            "the default ServiceAccount",
            lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        )
        self._wait(f"node {self.node_name} Ready and schedulable", self._node_ready)

    def _spawn_node_agent(
        self, component: str, node_name: str, state: Path, taints: str = ""
    ) -> None:
        venv_bin = str(Path(sys.executable).parent)
        agent_env = dict(os.environ)
        agent_env["PATH"] = os.pathsep.join([venv_bin, agent_env.get("PATH", os.defpath)])
        if sys.prefix != sys.base_prefix:  # as if the venv were activated
            agent_env["VIRTUAL_ENV"] = sys.prefix
        agent_env["PYTHONUNBUFFERED"] = "1"
        self._spawn(
            component,
            [
                sys.executable,
                "-m",
                "devcluster.node",
                f"--kubeconfig={self.kubeconfig}",
                f"--state={state}",
                f"--node-name={node_name}",
                f"--register-with-taints={taints}",
            ],
            env=agent_env,
            cwd=_REPO_ROOT,
        )

    # -- more nodes ----------------------------------------------------------------------

    def node_state_dir(self, node_name: str) -> Path:
        """An added node's agent state: its pods are under ``pods/`` there."""
        return self.state_dir / "nodes" / node_name

    def add_node(self, node_name: str, taints: str = "") -> None:
        """Start another node agent, registering ``node_name`` (with ``taints``, as the kubelet's
        ``--register-with-taints``: ``key=value:Effect,...``), and return once it is Ready."""
        component = f"node-agent-{node_name}"
        if component in self._records:
            raise RuntimeError(f"node {node_name} was already added")
        self._spawn_node_agent(component, node_name, self.node_state_dir(node_name), taints)
        self._wait(f"node {node_name} Ready", lambda: self._ready_node(node_name) is not None)

    def lose_node(self, node_name: str) -> None:
        """The added node ``node_name`` vanishes as a machine does: its agent and every pod process
        it started are SIGKILLed, nothing reports anything. Its Node stays in the API, as it does
        until its cloud provider (or the test, in its place) deletes it."""
        component = f"node-agent-{node_name}"
        if component not in self._records:
            raise RuntimeError(f"node {node_name} was not added by add_node")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._records[component]["pid"], signal.SIGKILL)
        proc = self._procs.pop(component, None)
        if proc is not None:
            proc.wait()
        self._kill_pod_processes(self.node_state_dir(node_name) / "pods")
        del self._records[component]
        self._launches.pop(component, None)
        self._save()

    def _spawn(
        self,
        name: str,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        with (self.logs_dir / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the starting process; a group to signal
            )
        self._procs[name] = proc
        self._launches[name] = (cmd, env, cwd)
        self._records[name] = {"pid": proc.pid, "start": _proc_start_time(proc.pid) or 0}
        self._save()
        _log(f"started {name} (pid {proc.pid}; log {self.logs_dir / (name + '.log')})")

    def _alive(self, name: str) -> bool:
        record = self._records.get(name)
        if record is None:
            return False
        proc = self._procs.get(name)
        if proc is not None:
            return proc.poll() is None
        start = _proc_start_time(record["pid"])
        return start is not None and (record["start"] == 0 or start == record["start"])

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            for name in self._records:
                if not self._alive(name):
                    raise RuntimeError(
                        f"{name} exited while waiting for {what}; log tail:\n{self.log_tail(name)}"
                    )
            with contextlib.suppress(OSError, ValueError):
                if ready():
                    return
            if time.monotonic() > deadline:
                tails = "\n".join(f"== {n}:\n{self.log_tail(n, 15)}" for n in self._records)
                raise TimeoutError(
                    f"timed out after {self.startup_timeout_s:.0f}s waiting for {what}\n{tails}"
                )
            time.sleep(0.1)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def audit_events(self) -> list[dict[str, Any]]:
        """The API server's audit events so far (``audit=True``), oldest first.

        Each is an ``audit.k8s.io/v1`` Event: ``user.username``, ``verb``, ``requestURI``,
        ``objectRef``, ``responseStatus.code``, ``stage``... A line still being written is skipped.
        """
        if not self.audit:
            raise RuntimeError("audit logging is off: start the Cluster with audit=True")
        try:
            text = self.audit_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        events: list[dict[str, Any]] = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    # -- health --------------------------------------------------------------------------

    @staticmethod
    def _etcd_healthy(url: str) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{url}/health", timeout=2.0) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """GET an API ``path`` as the admin: (HTTP status, decoded JSON or text)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
        )
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with opener.open(request, timeout=timeout) as resp:
                status, body = int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        text = body.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def _ready_node(self, node_name: str) -> dict[str, Any] | None:
        """The Node, if its Ready condition is True."""
        status, node = self.get(f"/api/v1/nodes/{node_name}")
        if status != 200:
            return None
        conditions = node.get("status", {}).get("conditions", [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return dict(node) if ready else None

    def _node_ready(self) -> bool:
        """The cluster's own node is Ready and takes pods (no taint but PreferNoSchedule)."""
        node = self._ready_node(self.node_name)
        if node is None:
            return False
        taints = node.get("spec", {}).get("taints", [])
        return not [t for t in taints if t.get("effect") != "PreferNoSchedule"]

    def healthy(self) -> bool:
        """Every recorded component is running, /readyz answers ok and the node is Ready."""
        if not self.server or any(not self._alive(n) for n in _ORDER):
            return False
        try:
            return self.get("/readyz", timeout=3.0)[0] == 200 and self._node_ready()
        except (OSError, ValueError):
            return False

    def restart(self, name: str, down_seconds: float = 0.0) -> None:
        """Stop one component (SIGTERM, then SIGKILL) and start it again as it was started,
        `down_seconds` after the SIGTERM: an outage of that component alone, as its clients see
        one (the API server stops serving at once, then drains for up to stop_timeout_s; that
        drain is part of the outage, not added to it). The API server is ready again (/readyz)
        when this returns."""
        if name not in self._launches:
            raise RuntimeError(f"{name} was not started by this process: cannot restart it")
        stopped = time.monotonic()
        self._stop_one(name, self.stop_timeout_s)
        # the outage's length is what is tested, not a wait
        time.sleep(max(0.0, down_seconds - (time.monotonic() - stopped)))
        cmd, env, cwd = self._launches[name]
        self._spawn(name, cmd, env=env, cwd=cwd)
        if name == "kube-apiserver":
            self._wait("kube-apiserver /readyz", lambda: self.get("/readyz")[0] == 200)

    # -- stopping ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every component (SIGTERM to its process group, SIGKILL after a timeout) and
        any pod process left behind. Logs and pods' directories stay for inspection."""
        for name in reversed(list(self._records)):  # the nodes added last first, etcd last
            timeout = self.stop_timeout_s + (10.0 if name.startswith("node-agent") else 0.0)
            self._stop_one(name, timeout)
        self._kill_pod_processes(self.pods_dir)
        for added in sorted(self.state_dir.glob("nodes/*/pods")):
            self._kill_pod_processes(added)
        self._records.clear()
        self._procs.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / _STATE_FILE).unlink()

    def _stop_one(self, name: str, timeout: float) -> None:
        if not self._alive(name):
            self._procs.pop(name, None)
            return
        pid = self._records[name]["pid"]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + timeout
            proc = self._procs.get(name)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=timeout)
            else:
                while self._alive(name) and time.monotonic() < deadline:
                    time.sleep(0.05)
            if not self._alive(name):
                break
            _log(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s; killing it")
        self._procs.pop(name, None)

    @staticmethod
    def _kill_pod_processes(pods_dir: Path) -> None:
        """SIGKILL pods' process groups an agent left behind (only ones it started)."""
        if not pods_dir.is_dir():
            return
        for pod_dir in pods_dir.iterdir():
            try:
                pid = int((pod_dir / "pid").read_text())
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            marker = f"{TERMINATION_LOG_ENV}={pod_dir / 'termination-log'}".encode()
            if marker in environ:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    # -- kubectl -------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        namespace: str | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin; raise :class:`KubectlError` on failure if ``check``."""
        cmd = [
            str(kubectl_binary()),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.state_dir / 'kubectl-cache'}",
        ]
        if namespace is not None:
            cmd.append(f"--namespace={namespace}")
        cmd.extend(args)
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, cmd, result.stdout, result.stderr)
        return result


# -- up and down (python -m devcluster) ---------------------------------------------------------


def up(state_dir: Path) -> Cluster:
    """Start a daemonized cluster in ``state_dir``, or return at once if one is up and healthy."""
    with _state_lock(state_dir):
        existing = Cluster.from_state(state_dir)
        if existing is not None:
            if existing.healthy():
                _log(f"already up: {existing.server}")
                return existing
            _log("a previous cluster is not healthy; stopping what is left of it")
            existing.stop()
        cluster = Cluster(state_dir)
        cluster.start()
        return cluster


def down(state_dir: Path) -> None:
    """Stop the cluster recorded in ``state_dir`` (if any)."""
    with _state_lock(state_dir):
        existing = Cluster.from_state(state_dir)
        if existing is None:
            _log(f"no cluster recorded in {state_dir}")
            return
        existing.stop()
        _log("stopped")
