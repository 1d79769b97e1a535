"""Session fixtures for operator tests: the CRD, the chart RBAC, MinIO, the operator process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.controlplane import Cluster
from devcluster.minio import MinioServer
from tests.operator.harness import (
    BUCKET,
    OperatorProcess,
    install_crd,
    install_rbac,
    s3_secret,
    service_account_kubeconfig,
)


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, s3_server: MinioServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """`quanteval-operator` running with the chart's ServiceAccount token, watching everything."""
    install_crd(cluster)
    account = install_rbac(cluster)
    state = tmp_path_factory.mktemp("operator")
    kubeconfig = service_account_kubeconfig(cluster, account, state / "kubeconfig")
    s3_server.create_bucket(BUCKET)
    # A short resync, so that the tests see it heal what no event would; short timings, so that
    # no test waits the minute a podless Job gets in production or a backoff's longest steps.
    settings = {
        "QUANTEVAL_S3_ENDPOINT": s3_server.endpoint,
        "QUANTEVAL_RESYNC_SECONDS": "10",
        "QUANTEVAL_PODLESS_SECONDS": "5",
        "QUANTEVAL_FAILED_CREATES_SECONDS": "3",
        "QUANTEVAL_RETRY_SECONDS": "1,2,3",
        # One CPU a worker (its OMP_NUM_THREADS): two at a time on this 2-core machine, not four
        # threads on two cores, which doubles every run's time.
        "QUANTEVAL_WORKER_CPU": "1",
    }
    process = OperatorProcess(kubeconfig, state, settings)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def eval_namespace(
    cluster: Cluster, namespace: str, s3_server: MinioServer, operator: OperatorProcess
) -> Iterator[str]:
    """A fresh namespace with the S3 Secret the workers reference; operator logs on failure."""
    cluster.kubectl("apply", "-f", "-", input=s3_secret(s3_server, namespace))
    yield namespace


@pytest.fixture(scope="session")
def tiny_model(tiny_llama_dir: Path) -> str:
    return str(tiny_llama_dir)
