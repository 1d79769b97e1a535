"""The command line's one way into the worker: each call imports it when first needed, so
`quanteval validate`, `plan` and `report` run where only the core is installed."""

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from quanteval.api.errors import CannotLoadError

if TYPE_CHECKING:
    from quanteval.api.result import CheckpointQuantization
    from quanteval.api.spec import ClassifierSpec

INSTALL_HINT = "install the worker extra: pip install 'quanteval[worker]'"
VLLM_PYTHON_ENV = "QUANTEVAL_VLLM_PYTHON"
VLLM_VENV = ".venv-vllm"  # scripts/setup-vllm-venv.sh makes it


def vllm_python() -> Path:
    """The Python of the vLLM environment: $QUANTEVAL_VLLM_PYTHON, else .venv-vllm beside this
    environment, else in the working directory. CannotLoadError (exit 4) when there is none."""
    given = os.environ.get(VLLM_PYTHON_ENV)
    candidates = (
        [Path(given)]
        if given
        else [
            Path(sys.prefix).parent / VLLM_VENV / "bin" / "python",
            Path(VLLM_VENV, "bin", "python"),
        ]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CannotLoadError(
        f"engine vllm: no Python with vLLM ({', '.join(map(str, candidates))} not found): vLLM "
        f"pins its own torch and transformers, so it lives in {VLLM_VENV}; make it with bash "
        f"scripts/setup-vllm-venv.sh, or point {VLLM_PYTHON_ENV} at one"
    )


def command(spec_file: Path, engine: str = "auto") -> list[str]:
    """The worker process for one run spec (`quanteval run --local` starts one per run), with
    the Python of the run's engine."""
    python = vllm_python() if engine == "vllm" else Path(sys.executable)
    return [str(python), "-m", "quanteval_worker.main", "--spec", str(spec_file)]


def package_location(package: str) -> Path | None:
    """The model file or folder an installed package ships; None without the worker."""
    try:
        from quanteval_worker.sources import package_location as locate
    except ImportError:
        return None
    return locate(package)


def count_parameters(source: str) -> int | None:
    """The model's parameter count read from its files; None without the worker or the files."""
    try:
        from quanteval_worker.parameters import count_parameters as count
    except ImportError:
        return None
    return count(source)


def checkpoint_quantization(source: str) -> "CheckpointQuantization | None":
    """How a pre-quantized checkpoint says it was quantized; None without the worker or the
    files (hub ids are not fetched)."""
    try:
        from quanteval_worker.parameters import checkpoint_quantization as read
    except ImportError:
        return None
    return read(source)


def classify(
    spec: "ClassifierSpec", emotions: Sequence[str], texts: Sequence[str]
) -> list[tuple[str, dict[str, float]]]:
    """(label, probabilities) of each text by the spec's classifier."""
    try:
        from quanteval_worker.classifier import load_classifier, predict
    except ImportError as error:
        raise CannotLoadError(
            f"the classifier needs the worker ({error}); {INSTALL_HINT}"
        ) from None
    classifier = load_classifier(spec, list(emotions)).classifier
    return [(p.label, p.probabilities) for p in predict(classifier, list(texts))]
