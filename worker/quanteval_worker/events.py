"""The worker's structured output (quanteval.api.worker_log): one JSON object a line on stderr."""

import sys
import time
from typing import Any

from quanteval.api.worker_log import WorkerEvent


def emit(event: str, **fields: Any) -> None:
    record = WorkerEvent.model_validate({"ts": round(time.time(), 3), "event": event, **fields})
    sys.stderr.write(record.to_line() + "\n")
    sys.stderr.flush()


def log(message: str, level: str = "info", **fields: Any) -> None:
    emit("log", level=level, message=message, **fields)
