"""The worker's structured output: one JSON object a line on stderr.

`quanteval run --local` reads the `progress` events to draw its progress bar; in a pod the same
lines are the container log.
"""

import json
import sys
import time
from typing import Any


def emit(event: str, **fields: Any) -> None:
    record = {"ts": round(time.time(), 3), "event": event, **fields}
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


def log(message: str, level: str = "info", **fields: Any) -> None:
    emit("log", level=level, message=message, **fields)
