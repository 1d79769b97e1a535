"""`make cluster`: the test control plane plus MinIO, for trying the operator by hand.

    python -m devcluster up     # idempotent; returns when everything is ready
    python -m devcluster down

Writes `.cluster/kubeconfig`, `.cluster/s3-secret.yaml` (the Secret the examples name, with no
namespace: apply it in any namespace) and `.cluster/operator.env` (the settings `make operator`
starts `quanteval-operator` with). MinIO listens on a fixed loopback port with a dev-only key.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import yaml

from devcluster import controlplane
from devcluster.minio import ensure_minio
from devcluster.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".cluster"
S3_PORT = 9900
S3_ENDPOINT = f"http://127.0.0.1:{S3_PORT}"
S3_ACCESS_KEY = "quanteval"
S3_SECRET_KEY = "quanteval-dev-only"  # loopback-only development server
BUCKET = "quanteval"
SECRET_NAME = "quanteval-s3"


def _s3_ready() -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{S3_ENDPOINT}/minio/health/ready", timeout=1.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_s3(state: Path) -> None:
    if _s3_ready():
        return
    data = state / "minio"
    data.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIO_")}
    env |= {"MINIO_ROOT_USER": S3_ACCESS_KEY, "MINIO_ROOT_PASSWORD": S3_SECRET_KEY,
            "MINIO_UPDATE": "off"}  # fmt: skip
    with (state / "minio.log").open("ab") as log:
        process = subprocess.Popen(
            [str(ensure_minio()), "server", str(data / "data"), "--address", f"127.0.0.1:{S3_PORT}",
             "--console-address", "127.0.0.1:0", "--certs-dir", str(data / "certs"), "--quiet"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    (state / "minio.pid").write_text(str(process.pid))
    wait_until(_s3_ready, timeout=60, what=f"MinIO at {S3_ENDPOINT}")
    client = boto3.session.Session().client(
        "s3", endpoint_url=S3_ENDPOINT, aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1",
    )  # fmt: skip
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)


def write_files(state: Path) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME},
        "stringData": {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY},
    }
    (state / "s3-secret.yaml").write_text(yaml.safe_dump(secret))
    worker = Path(sys.executable).parent / "quanteval-worker"
    # vllm runs: the worker of .venv-vllm (make setup), where vLLM pins its own stack.
    vllm_worker = Path.cwd() / ".venv-vllm" / "bin" / "quanteval-worker"
    settings = {
        "KUBECONFIG": str(state / "kubeconfig"),
        "QUANTEVAL_S3_ENDPOINT": S3_ENDPOINT,
        "QUANTEVAL_S3_BUCKET": BUCKET,
        "QUANTEVAL_S3_SECRET_NAME": SECRET_NAME,
        "QUANTEVAL_WORKER_COMMAND": f'["{worker}"]',
        "QUANTEVAL_WORKER_COMMANDS": f'{{"vllm": ["{vllm_worker}"]}}',
        "QUANTEVAL_LIVENESS": "http://127.0.0.1:8080/healthz",
    }
    (state / "operator.env").write_text("".join(f"{k}='{v}'\n" for k, v in settings.items()))


def up(state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    cluster = controlplane.up(state)
    start_s3(state)
    cluster.kubectl(
        "apply", "--server-side", "-f", str(ROOT / "crds" / "quantevals.quanteval.io.yaml")
    )
    write_files(state)
    print(
        f"cluster ready: export KUBECONFIG={state / 'kubeconfig'}\n"
        f"  kubectl apply -f {state / 's3-secret.yaml'}\n"
        "  make operator   # in another terminal\n"
        "  kubectl apply -f manifests/examples/quickstart.yaml && kubectl get quantevals -w"
    )


def down(state: Path) -> None:
    controlplane.down(state)
    pid_file = state / "minio.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devcluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state", type=Path, default=STATE)
    args = parser.parse_args(argv)
    (up if args.action == "up" else down)(args.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
