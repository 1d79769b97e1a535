"""Operator settings from the environment the Helm chart sets: defaults a QuantEval may override."""

import json
import os
from dataclasses import dataclass, field
from typing import Any

from quanteval.engines import Engine
from quanteval_operator.passes import RETRY_SECONDS


def _string_list(parsed: Any, name: str) -> list[str]:
    if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
        raise ValueError(f"{name} must be a JSON list of strings")
    return parsed


def _command(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        return _string_list(json.loads(value), "QUANTEVAL_WORKER_COMMAND")
    return value.split()


def _by_engine(name: str, value: str) -> dict[str, Any]:
    """A JSON object keyed by engine (the chart's worker.images / worker.commands); empty: {}."""
    if not value.strip():
        return {}
    parsed = json.loads(value)
    if not isinstance(parsed, dict) or not set(parsed) <= {e.value for e in Engine}:
        raise ValueError(f"{name} must be a JSON object keyed by {', '.join(Engine)}")
    return parsed


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list; empty: none."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _flag(value: str, default: bool) -> bool:
    value = value.strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise ValueError(f"not true or false: {value!r}")
    return value == "true"


def _seconds(value: str, default: float) -> float:
    """A positive number of seconds; empty: the default."""
    if not value.strip():
        return default
    seconds = float(value)
    if not seconds > 0:
        raise ValueError(f"not a positive number of seconds: {value!r}")
    return seconds


def _schedule(value: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """Comma-separated positive seconds; empty: the default."""
    parts = _names(value)
    return tuple(_seconds(part, 0.0) for part in parts) if parts else default


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
    # Per engine, where a run's engine needs its own environment (vLLM pins its own torch): the
    # image and command of that engine's runs (the chart's worker.images / worker.commands).
    engine_images: dict[str, str] = field(default_factory=dict)
    engine_commands: dict[str, list[str]] = field(default_factory=dict)
    image_pull_policy: str = "IfNotPresent"
    gpu_resource_name: str = "nvidia.com/gpu"
    gpu_memory_gib: float = 80.0
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_secret_name: str = ""
    hf_cache_claim: str = ""
    run_as_user: int = 10001  # kube-score: ids below 10,000 may be a host user
    gpu_hour_usd: float | None = None
    cpu_hour_usd: float | None = None
    # A worker's CPU (request and limit) where spec.resources.cpu is not set: its sampler,
    # tokenizer and bookkeeping are CPU work.
    worker_cpu: str = "2"
    # A worker's disk where its model cache is an emptyDir and the model's size is unknown.
    worker_ephemeral_storage: str = "50Gi"
    # How long a run or the report waits out an unreachable store (spec.output.s3 overrides).
    storage_retry_seconds: int = 600
    # /dev/shm of a tensor-parallel vLLM run (vLLM's docs run its image with --shm-size 10.24gb).
    worker_shm_size: str = "10Gi"
    # Tenancy: what a QuantEval may ask for (the chart's tenancy.* values).
    allow_worker_image: bool = True  # may spec.workerImage be set at all
    allowed_worker_images: tuple[str, ...] = ()  # if any: exact references, or prefixes ending *
    allow_secret_refs: bool = True  # may a QuantEval name its own Secrets
    allowed_secrets: tuple[str, ...] = ()  # if any: the Secret names it may name
    allow_volume_claims: bool = True  # may spec.huggingFace.cacheVolumeClaim be set
    # Timing: a Job with no pod after podless_seconds has its FailedCreate Event read (each
    # namespace's Events listed at most every failed_creates_seconds); a failed or refused pass
    # is tried again after retry_seconds[n] for the n-th failure in a row (the last one caps).
    podless_seconds: float = 60.0
    failed_creates_seconds: float = 30.0
    retry_seconds: tuple[float, ...] = RETRY_SECONDS

    def command_for(self, engine: Engine) -> list[str]:
        """The worker command of `engine`'s runs: its own, else the worker's."""
        return list(self.engine_commands.get(engine.value, self.worker_command))

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
            engine_images=_by_engine(
                "QUANTEVAL_WORKER_IMAGES", env.get("QUANTEVAL_WORKER_IMAGES", "")
            ),
            engine_commands={
                engine: _string_list(command, f"QUANTEVAL_WORKER_COMMANDS.{engine}")
                for engine, command in _by_engine(
                    "QUANTEVAL_WORKER_COMMANDS", env.get("QUANTEVAL_WORKER_COMMANDS", "")
                ).items()
            },
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
            worker_cpu=env.get("QUANTEVAL_WORKER_CPU") or defaults.worker_cpu,
            worker_ephemeral_storage=env.get("QUANTEVAL_WORKER_EPHEMERAL_STORAGE")
            or defaults.worker_ephemeral_storage,
            worker_shm_size=env.get("QUANTEVAL_WORKER_SHM_SIZE") or defaults.worker_shm_size,
            storage_retry_seconds=int(
                _seconds(
                    env.get("QUANTEVAL_STORAGE_RETRY_SECONDS", ""), defaults.storage_retry_seconds
                )
            ),
            allow_worker_image=_flag(env.get("QUANTEVAL_ALLOW_WORKER_IMAGE", ""), True),
            allowed_worker_images=_names(env.get("QUANTEVAL_ALLOWED_WORKER_IMAGES", "")),
            allow_secret_refs=_flag(env.get("QUANTEVAL_ALLOW_SECRET_REFS", ""), True),
            allowed_secrets=_names(env.get("QUANTEVAL_ALLOWED_SECRETS", "")),
            allow_volume_claims=_flag(env.get("QUANTEVAL_ALLOW_VOLUME_CLAIMS", ""), True),
            podless_seconds=_seconds(
                env.get("QUANTEVAL_PODLESS_SECONDS", ""), defaults.podless_seconds
            ),
            failed_creates_seconds=_seconds(
                env.get("QUANTEVAL_FAILED_CREATES_SECONDS", ""), defaults.failed_creates_seconds
            ),
            retry_seconds=_schedule(env.get("QUANTEVAL_RETRY_SECONDS", ""), defaults.retry_seconds),
        )
