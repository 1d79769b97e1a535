"""Exit codes of `quanteval-worker` and the `quanteval` CLI.

The operator's Job `podFailurePolicy` keys on INVALID_SPEC, CANNOT_LOAD and OUT_OF_MEMORY: they are
deterministic, so retrying the pod cannot help. INTERNAL_ERROR (1) is anything unexpected: its
reason still goes to the termination message, and the Job retries it. 2 and 126+ stay for the
shell.
"""

from enum import IntEnum

from quanteval.api.states import Reason


class ExitCode(IntEnum):
    OK = 0
    INTERNAL_ERROR = 1
    INVALID_SPEC = 3
    CANNOT_LOAD = 4
    OUT_OF_MEMORY = 5
    STORAGE = 6


DETERMINISTIC_FAILURES = (ExitCode.INVALID_SPEC, ExitCode.CANNOT_LOAD, ExitCode.OUT_OF_MEMORY)


def first_line(error: BaseException) -> str:
    """An exception's first line of text, or its type's name when it has none: for reasons."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class QuantEvalError(Exception):
    """An error with a user-facing message and the exit code it maps to."""

    exit_code: ExitCode = ExitCode.INVALID_SPEC
    reason: Reason = Reason.INVALID_SPEC

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidSpecError(QuantEvalError):
    exit_code = ExitCode.INVALID_SPEC
    reason = Reason.INVALID_SPEC


class CannotLoadError(QuantEvalError):
    exit_code = ExitCode.CANNOT_LOAD
    reason = Reason.CANNOT_LOAD


class OutOfMemoryError(QuantEvalError):
    exit_code = ExitCode.OUT_OF_MEMORY
    reason = Reason.OUT_OF_MEMORY


class StorageError(QuantEvalError):
    exit_code = ExitCode.STORAGE
    reason = Reason.STORAGE_FAILED
