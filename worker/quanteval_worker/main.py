"""`quanteval-worker`: evaluate one run (model x precision) and write its results.

Input: a run spec (JSON) from `--spec FILE` or the QUANTEVAL_RUN_SPEC environment variable.
Output: `generations.jsonl`, then `result.json` (the commit mark), and a compact termination
message at QUANTEVAL_TERMINATION_LOG (default /dev/termination-log), on failure too. While an S3
store is down the work goes on and its writes wait on disk (quanteval_worker.spool).
Exit codes: see quanteval.api.errors.
"""

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path

from pydantic import ValidationError

from quanteval.api.errors import (
    ExitCode,
    InvalidSpecError,
    OutOfMemoryError,
    QuantEvalError,
    first_line,
)
from quanteval.api.layout import RESULT_FILE, RUN_SPEC_FILE
from quanteval.api.result import RunResult
from quanteval.api.runspec import RUN_SPEC_GZIP_ENV, RunSpec, run_spec_from_env
from quanteval.api.spec import format_validation_error
from quanteval.api.states import Reason, RunState
from quanteval.api.termination import DEFAULT_TERMINATION_LOG, TERMINATION_LOG_ENV, run_message
from quanteval.storage import Storage, open_storage
from quanteval_worker.events import log
from quanteval_worker.spool import SpooledStorage, spooled


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # bitsandbytes int8 on CPU warns on every matmul: tens of thousands of lines.
    warnings.filterwarnings("ignore", message=".*inputs will be cast from.*")
    warnings.filterwarnings("ignore", category=FutureWarning)


def read_run_spec(path: str | None) -> RunSpec:
    if path:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise InvalidSpecError(f"cannot read run spec {path}: {error.strerror}") from None
    else:
        try:
            text = run_spec_from_env(os.environ)
        except (ValueError, OSError, EOFError) as error:  # binascii, gzip: a damaged value
            raise InvalidSpecError(f"cannot decode {RUN_SPEC_GZIP_ENV}: {error}") from None
        if not text:
            raise InvalidSpecError("no run spec: pass --spec FILE or set QUANTEVAL_RUN_SPEC")
    try:
        return RunSpec.model_validate_json(text)
    except ValidationError as error:
        raise InvalidSpecError(f"invalid run spec:\n{format_validation_error(error)}") from None


def write_termination_message(text: str) -> None:
    path = os.environ.get(TERMINATION_LOG_ENV, DEFAULT_TERMINATION_LOG)
    try:
        Path(path).write_text(text)
    except OSError as error:
        log(f"cannot write the termination message to {path}: {error.strerror}", level="warning")


def existing_result(storage: Storage, spec: RunSpec, force: bool) -> RunResult | None:
    """The run's earlier result when it has the same content hash (resume)."""
    text = storage.read_text(RESULT_FILE)
    if text is None:
        return None
    try:
        previous = RunResult.model_validate_json(text)
    except ValidationError:
        previous = None
    if previous is not None and previous.content_hash == spec.content_hash and not force:
        return previous
    if not force:
        raise InvalidSpecError(
            f"{storage.uri}/{RESULT_FILE} holds a result of another configuration; "
            "write to another output location, or pass --force to replace it"
        )
    storage.delete(RESULT_FILE)  # never leave an old result.json beside new generations
    return None


def _fail(run_id: str, error: QuantEvalError) -> int:
    log(error.message, level="error", reason=error.reason)
    write_termination_message(
        run_message(run_id, RunState.FAILED, reason=error.reason, message=error.message).to_text()
    )
    return error.exit_code


def run(spec_path: str | None, force: bool, keep_partial: bool = False) -> int:
    run_id = "unknown"
    try:
        spec = read_run_spec(spec_path)
        run_id = spec.run_id
        storage = spooled(open_storage(spec.output_uri, spec.s3_endpoint, spec.s3_region))
        previous = existing_result(storage, spec, force)
        if previous is not None:
            log("result exists with the same content hash; skipping", uri=storage.uri)
            write_termination_message(
                run_message(
                    run_id,
                    RunState.SUCCEEDED,
                    previous.metrics,
                    reason=Reason.ALREADY_COMPLETE,
                    intensity=previous.intensity_task,
                ).to_text()
            )
            return ExitCode.OK
        # First: the report knows the run (model, precision, engine) by it, whatever follows.
        storage.write_text(RUN_SPEC_FILE, spec.to_json())
        # torch: only once the spec is valid
        from quanteval_worker.checkpoints import remove_partial
        from quanteval_worker.evaluation import evaluate

        result = evaluate(spec, storage)
        storage.write_text(RESULT_FILE, result.to_json())  # last: marks the run complete
        if isinstance(storage, SpooledStorage):  # what waited out an outage, result.json last
            storage.flush()
        if not keep_partial:
            remove_partial(storage)
    except QuantEvalError as error:
        return _fail(run_id, error)
    except Exception as error:
        from quanteval_worker.loading import is_out_of_memory

        if is_out_of_memory(error):
            return _fail(run_id, OutOfMemoryError(f"out of memory: {first_line(error)[:500]}"))
        # Unexpected: the reason still reaches the pod's status; the traceback goes to the log.
        log("unexpected failure", level="error", traceback=traceback.format_exc())
        message = f"{type(error).__name__}: {first_line(error)[:500]}"
        write_termination_message(
            run_message(
                run_id, RunState.FAILED, reason=Reason.INTERNAL_ERROR, message=message
            ).to_text()
        )
        return ExitCode.INTERNAL_ERROR
    log("run complete", uri=storage.uri, f1Macro=round(result.metrics.f1_macro, 4))
    write_termination_message(
        run_message(
            run_id, RunState.SUCCEEDED, result.metrics, intensity=result.intensity_task
        ).to_text()
    )
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quanteval-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="run spec JSON file (default: $QUANTEVAL_RUN_SPEC)")
    parser.add_argument("--force", action="store_true", help="replace an existing result")
    parser.add_argument(
        "--keep-partial",
        action="store_true",
        help="keep the finished batches under partial/ once result.json is written",
    )
    args = parser.parse_args(argv)
    _quiet_libraries()
    return run(args.spec, args.force, args.keep_partial)


if __name__ == "__main__":
    sys.exit(main())
