"""The real control plane: one single-node cluster per session (devcluster/), for the operator
and dev-cluster suites.

``cluster`` is a :class:`devcluster.controlplane.Cluster`: ``cluster.kubeconfig`` (admin kubeconfig
path), ``cluster.kubectl(*args, namespace=None, input=None, check=True)``, ``cluster.get(path)``
(a GET as the admin), ``cluster.pod_dir(ns, name)`` / ``cluster.pod_pid(ns, name)`` (the node
agent's per-pod directory and process). ``namespace`` is a fresh namespace per test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devcluster.controlplane import Cluster
from devcluster.kubernetes import (
    KubeUnavailableError,
    ensure_kube_binaries,
    etcd_binary,
    kubectl_binary,
)
from devcluster.waiting import wait_until


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the whole session (the first run builds the control plane: many minutes)."""
    try:
        ensure_kube_binaries()
        etcd_binary()
        kubectl_binary()
    except KubeUnavailableError as exc:
        pytest.skip(str(exc))
    with Cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def fresh_namespace(cluster: Cluster) -> str:
    """A new namespace, once its default ServiceAccount exists (pods need it)."""
    name = f"qe-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        lambda: cluster.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200,
        timeout=60,
        what=f"the default ServiceAccount in {name}",
    )
    return name


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount), deleted after the test."""
    name = fresh_namespace(cluster)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
