"""Operator settings from the environment the Helm chart sets: defaults a QuantEval may override."""

import json
import os
from dataclasses import dataclass, field


def _command(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        parsed = json.loads(value)
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            raise ValueError("QUANTEVAL_WORKER_COMMAND must be a JSON list of strings")
        return parsed
    return value.split()


def _price(value: str) -> float | None:
    """A price in US dollars, or None when unset (empty: no invented price)."""
    return float(value) if value.strip() else None


@dataclass(frozen=True)
class Settings:
    worker_image: str = "ghcr.io/quanteval/quanteval-worker:0.1.0"
    # Always set explicitly on the Job: the test node agent cannot read image entry points, and the
    # scale benchmark swaps in a worker that finishes at once.
    worker_command: list[str] = field(default_factory=lambda: ["quanteval-worker"])
    report_command: list[str] = field(default_factory=lambda: ["quanteval", "report"])
    image_pull_policy: str = "IfNotPresent"
    gpu_resource_name: str = "nvidia.com/gpu"
    gpu_memory_gib: float = 80.0
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_secret_name: str = ""
    hf_cache_claim: str = ""
    run_as_user: int = 1000
    gpu_hour_usd: float | None = None
    cpu_hour_usd: float | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        defaults = cls()
        return cls(
            worker_image=env.get("QUANTEVAL_WORKER_IMAGE", defaults.worker_image),
            worker_command=_command(env["QUANTEVAL_WORKER_COMMAND"])
            if env.get("QUANTEVAL_WORKER_COMMAND")
            else defaults.worker_command,
            report_command=_command(env["QUANTEVAL_REPORT_COMMAND"])
            if env.get("QUANTEVAL_REPORT_COMMAND")
            else defaults.report_command,
            image_pull_policy=env.get("QUANTEVAL_IMAGE_PULL_POLICY", defaults.image_pull_policy),
            gpu_resource_name=env.get("QUANTEVAL_GPU_RESOURCE_NAME", defaults.gpu_resource_name),
            gpu_memory_gib=float(env.get("QUANTEVAL_GPU_MEMORY_GIB", defaults.gpu_memory_gib)),
            s3_endpoint=env.get("QUANTEVAL_S3_ENDPOINT", ""),
            s3_bucket=env.get("QUANTEVAL_S3_BUCKET", ""),
            s3_secret_name=env.get("QUANTEVAL_S3_SECRET_NAME", ""),
            hf_cache_claim=env.get("QUANTEVAL_HF_CACHE_CLAIM", ""),
            run_as_user=int(env.get("QUANTEVAL_RUN_AS_USER", defaults.run_as_user)),
            gpu_hour_usd=_price(env.get("QUANTEVAL_GPU_HOUR_USD", "")),
            cpu_hour_usd=_price(env.get("QUANTEVAL_CPU_HOUR_USD", "")),
        )
