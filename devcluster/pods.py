"""The node agent's pod runtime: a container's environment from the pod spec (kubelet semantics),
``$(VAR)`` expansion, and what the agent knows about each pod's process: its terminated state, its
termination message, an earlier agent's orphan."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import kubernetes.utils

from devcluster.nodeapi import JSON, Api, timestamp
from quanteval.api.termination import TERMINATION_LOG_ENV

NODE_CAPACITY = {
    "cpu": "1000",
    "memory": "4Ti",
    "ephemeral-storage": "64Ti",  # a kubelet reports its disk; pods request it
    "pods": "1000",
    "nvidia.com/gpu": "1000",
}
POD_IP = "127.0.0.1"

_MAX_MESSAGE_BYTES = 4096  # the kubelet's limit on a termination message
_FALLBACK_BYTES = 2048  # FallbackToLogsOnError: at most this much of the log's tail...
_FALLBACK_LINES = 80  # ...and at most this many lines
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """The container's environment references something missing (CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` is a literal ``$``; unknown references stay."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:  # unterminated: the rest is literal
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env[name] if name and name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(ch + nxt)
            i += 2
    return "".join(out)


def _field_ref(pod: JSON, path: str) -> str:
    meta, spec = pod["metadata"], pod.get("spec", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted(meta.get(path.split(".")[1], {}).items())
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in items)
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
        "status.hostIP": POD_IP,
        "status.hostIPs": POD_IP,
    }
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path])


def _resource_field_ref(container: JSON, ref: JSON) -> str:
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    resources = container.get("resources", {})
    value = resources.get(kind, {}).get(name)
    if value is None and kind == "requests":
        value = resources.get("limits", {}).get(name)
    if value is None:  # no limit: the node's allocatable, like the kubelet
        value = NODE_CAPACITY.get(name)
    if value is None:
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    quantity = kubernetes.utils.parse_quantity(value)
    divisor = kubernetes.utils.parse_quantity(ref.get("divisor", "1") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    return str(math.ceil(quantity / divisor))


class _EnvSource:
    """Reads the pod's Secrets and ConfigMaps (once each per build)."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._cache: dict[tuple[str, str], JSON | None] = {}

    def data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        key = (kind, name)
        if key not in self._cache:
            ns = quote(self.namespace, safe="")
            path = f"/api/v1/namespaces/{ns}/{kind}s/{quote(name, safe='')}"
            self._cache[key] = self.api.get_or_none(path)
        obj = self._cache[key]
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind} "{name}" not found')
        if kind == "secret":
            return {
                k: base64.b64decode(v).decode("utf-8", "replace")
                for k, v in (obj.get("data") or {}).items()
            }
        return dict(obj.get("data") or {})

    def key(self, kind: str, ref: JSON) -> str | None:
        name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
        data = self.data(kind, name, optional)
        if data is None:
            return None
        if key not in data:
            if optional:
                return None
            label = "Secret" if kind == "secret" else "ConfigMap"
            raise ConfigError(f"couldn't find key {key} in {label} {self.namespace}/{name}")
        return data[key]


def build_env(api: Api, pod: JSON, container: JSON) -> dict[str, str]:
    """The container's environment from the pod spec only (kubelet semantics and order)."""
    source = _EnvSource(api, pod["metadata"]["namespace"])
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = str(src.get("prefix", ""))
        for kind, ref_key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = src.get(ref_key)
            if ref is None:
                continue
            data = source.data(kind, ref.get("name", ""), bool(ref.get("optional")))
            for k, v in (data or {}).items():
                if _ENV_NAME.match(prefix + k):  # the kubelet skips invalid names too
                    env[prefix + k] = v
    for var in container.get("env") or []:
        name = var["name"]
        value_from = var.get("valueFrom")
        if value_from is None:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        value: str | None
        if "secretKeyRef" in value_from:
            value = source.key("secret", value_from["secretKeyRef"])
        elif "configMapKeyRef" in value_from:
            value = source.key("configmap", value_from["configMapKeyRef"])
        elif "fieldRef" in value_from:
            value = _field_ref(pod, str(value_from["fieldRef"].get("fieldPath", "")))
        elif "resourceFieldRef" in value_from:
            value = _resource_field_ref(container, value_from["resourceFieldRef"])
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(value_from)}")
        if value is not None:
            env[name] = value
    return env


@dataclass
class Run:
    """What the agent knows about one pod (by uid)."""

    uid: str
    namespace: str
    name: str
    dir: Path
    start_time: str = field(default_factory=timestamp)
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    last_terminated: JSON | None = None
    next_start: float = 0.0
    waiting: tuple[str, str] | None = None
    terminal: tuple[str, JSON] | None = None  # (phase, terminated state) once decided
    pod_reason: tuple[str, str] | None = None
    term_deadline: float | None = None
    deleted: bool = False
    last_patch: str | None = None
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def condition(self, type_: str, status: bool, reason: str | None = None) -> JSON:
        value = "True" if status else "False"
        old = self.conditions.get(type_)
        if old is None or old[0] != value:
            self.conditions[type_] = (value, timestamp())
        cond: JSON = {
            "type": type_,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": self.conditions[type_][1],
        }
        if reason:
            cond["reason"] = reason
        return cond

    def kill_orphan(self) -> None:
        """Kill a process group an earlier agent started for this pod, if it is still there."""
        try:
            pid = int((self.dir / "pid").read_text())
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except (OSError, ValueError):
            return
        marker = f"{TERMINATION_LOG_ENV}={self.dir / 'termination-log'}".encode()
        if marker in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def terminated(self, code: int, reason: str, message: str) -> JSON:
        """The container's terminated state, as a kubelet reports it; records the finish time."""
        self.finished_at = timestamp()
        state: JSON = {
            "exitCode": code,
            "reason": reason,
            "startedAt": self.started_at or self.finished_at,
            "finishedAt": self.finished_at,
        }
        if message:
            state["message"] = message
        if self.proc is not None:
            state["containerID"] = f"qe://{self.proc.pid}"
        return state

    def termination_message(self, pod: JSON, code: int) -> str:
        """The termination log, or the log's tail (FallbackToLogsOnError, on failure)."""
        container = pod["spec"]["containers"][0]
        try:
            with (self.dir / "termination-log").open("rb") as f:
                message = f.read(_MAX_MESSAGE_BYTES)
        except OSError:
            message = b""
        policy = container.get("terminationMessagePolicy", "File")
        if not message and code != 0 and policy == "FallbackToLogsOnError":
            try:
                with (self.dir / "log").open("rb") as f:
                    f.seek(max(0, f.seek(0, os.SEEK_END) - _FALLBACK_BYTES))
                    message = f.read()
            except OSError:
                message = b""
            lines = message.rstrip(b"\n").split(b"\n")[-_FALLBACK_LINES:]
            message = b"\n".join(lines) + (b"\n" if message.endswith(b"\n") else b"")
        return message.decode("utf-8", "replace")
