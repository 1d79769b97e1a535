"""The command line's one way into the worker: each call imports it when first needed, so
`quanteval validate`, `plan` and `report` run where only the core is installed."""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from quanteval.api.errors import CannotLoadError

if TYPE_CHECKING:
    from quanteval.api.result import CheckpointQuantization
    from quanteval.api.spec import ClassifierSpec

INSTALL_HINT = "install the worker extra: pip install 'quanteval[worker]'"


def command(spec_file: Path) -> list[str]:
    """The worker process for one run spec (`quanteval run --local` starts one per run)."""
    return [sys.executable, "-m", "quanteval_worker.main", "--spec", str(spec_file)]


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
