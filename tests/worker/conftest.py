"""Fixtures of the worker suites that more than one module builds on."""

from pathlib import Path

import pytest

from quanteval_worker.main import main
from tests.tiny_models import random_llama

from .local_runs import SHAPE, Outcome, Worker, read_outcome


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama of local_runs.SHAPE at fp32, with no quantization_config: what the
    native-checkpoint tests quantize and compare with."""
    return random_llama(tmp_path_factory.mktemp("tiny-plain"), "float32", "cpu", **SHAPE)


@pytest.fixture
def worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> Worker:
    """The worker's main() in this process with `env`: the exit code it returns (the process's
    status, as test_an_invalid_run_spec_exits_3 shows), without the seconds a new process spends
    importing torch and transformers."""

    def run(env: dict[str, str], *, traceback_expected: bool = False) -> Outcome:
        termination = tmp_path / "termination-log"
        for name, value in (env | {"QUANTEVAL_TERMINATION_LOG": str(termination)}).items():
            monkeypatch.setenv(name, value)
        capfd.readouterr()
        code = main([])
        return read_outcome(termination, code, capfd.readouterr().err, traceback_expected)

    return run
