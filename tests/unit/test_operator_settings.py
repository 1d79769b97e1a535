"""Operator settings from the environment the Helm chart sets."""

import json

import pytest

from quanteval_operator.settings import Settings


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.worker_image == "ghcr.io/quanteval/quanteval-worker:0.1.0"
    assert settings.worker_command == ["quanteval-worker"]
    assert settings.image_pull_policy == "IfNotPresent"
    assert settings.gpu_resource_name == "nvidia.com/gpu"
    assert settings.gpu_memory_gib == 80.0
    assert settings.s3_endpoint == ""
    assert settings.s3_bucket == ""
    assert settings.s3_secret_name == ""
    assert settings.hf_cache_claim == ""
    assert settings.run_as_user == 10001  # kube-score: no id below 10,000
    assert (settings.worker_cpu, settings.worker_ephemeral_storage) == ("2", "50Gi")
    assert settings.allow_worker_image and settings.allowed_worker_images == ()


def test_every_variable() -> None:
    settings = Settings.from_env(
        {
            "QUANTEVAL_WORKER_IMAGE": "registry.example.com/worker:2",
            "QUANTEVAL_WORKER_COMMAND": "quanteval-worker --verbose",
            "QUANTEVAL_IMAGE_PULL_POLICY": "Always",
            "QUANTEVAL_GPU_RESOURCE_NAME": "amd.com/gpu",
            "QUANTEVAL_GPU_MEMORY_GIB": "141",
            "QUANTEVAL_S3_ENDPOINT": "http://minio:9000",
            "QUANTEVAL_S3_BUCKET": "results",
            "QUANTEVAL_S3_SECRET_NAME": "s3-credentials",
            "QUANTEVAL_HF_CACHE_CLAIM": "hf-cache",
            "QUANTEVAL_RUN_AS_USER": "65532",
            "QUANTEVAL_GPU_HOUR_USD": "2.5",
            "QUANTEVAL_CPU_HOUR_USD": "",
            "QUANTEVAL_PODLESS_SECONDS": "5",
            "QUANTEVAL_FAILED_CREATES_SECONDS": "2.5",
            "QUANTEVAL_RETRY_SECONDS": "0.5, 1, 3",
            "UNRELATED": "ignored",
        }
    )

    assert settings == Settings(
        worker_image="registry.example.com/worker:2",
        worker_command=["quanteval-worker", "--verbose"],
        image_pull_policy="Always",
        gpu_resource_name="amd.com/gpu",
        gpu_memory_gib=141.0,
        s3_endpoint="http://minio:9000",
        s3_bucket="results",
        s3_secret_name="s3-credentials",
        hf_cache_claim="hf-cache",
        run_as_user=65532,
        gpu_hour_usd=2.5,
        cpu_hour_usd=None,  # empty: no price, so no dollars from CPU time
        podless_seconds=5.0,
        failed_creates_seconds=2.5,
        retry_seconds=(0.5, 1.0, 3.0),
    )


def test_json_list_command() -> None:
    command = ["python", "-c", "import sys; sys.exit(0)"]

    settings = Settings.from_env({"QUANTEVAL_WORKER_COMMAND": json.dumps(command)})

    assert settings.worker_command == command


def test_json_list_command_with_surrounding_space() -> None:
    settings = Settings.from_env({"QUANTEVAL_WORKER_COMMAND": '  ["a b", "c"]\n'})

    assert settings.worker_command == ["a b", "c"]


def test_space_separated_command() -> None:
    settings = Settings.from_env(
        {"QUANTEVAL_WORKER_COMMAND": "  python  -m quanteval_worker.main\t--flag "}
    )

    assert settings.worker_command == ["python", "-m", "quanteval_worker.main", "--flag"]


def test_empty_command_keeps_the_default() -> None:
    assert Settings.from_env({"QUANTEVAL_WORKER_COMMAND": ""}).worker_command == [
        "quanteval-worker"
    ]


@pytest.mark.parametrize("value", ['["python", "-m"', "[python]", '["a", 1]', "[]]"])
def test_bad_json_command_raises(value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"QUANTEVAL_WORKER_COMMAND": value})


def test_a_json_command_of_non_strings_names_the_variable() -> None:
    with pytest.raises(ValueError, match="QUANTEVAL_WORKER_COMMAND"):
        Settings.from_env({"QUANTEVAL_WORKER_COMMAND": '["worker", 3]'})


def test_bad_numbers_raise() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"QUANTEVAL_GPU_MEMORY_GIB": "eighty"})
    with pytest.raises(ValueError):
        Settings.from_env({"QUANTEVAL_RUN_AS_USER": "root"})
    with pytest.raises(ValueError, match="positive number of seconds"):
        Settings.from_env({"QUANTEVAL_PODLESS_SECONDS": "0"})
    with pytest.raises(ValueError, match="positive number of seconds"):
        Settings.from_env({"QUANTEVAL_RETRY_SECONDS": "1, -2"})


def test_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTEVAL_S3_BUCKET", "from-process-env")
    monkeypatch.setenv("QUANTEVAL_WORKER_COMMAND", '["w"]')

    settings = Settings.from_env()

    assert settings.s3_bucket == "from-process-env"
    assert settings.worker_command == ["w"]


def test_default_commands_are_not_shared() -> None:
    first, second = Settings(), Settings()

    assert first.worker_command is not second.worker_command
