"""Fixtures of the worker suites that more than one module builds on."""

from pathlib import Path

import pytest

from tests.tiny_models import random_llama

from .local_runs import SHAPE


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama of local_runs.SHAPE at fp32, with no quantization_config: what the
    native-checkpoint tests quantize and compare with."""
    return random_llama(tmp_path_factory.mktemp("tiny-plain"), "float32", "cpu", **SHAPE)
